"""The ``devin`` engine: Cognition's Devin CLI (Devin for Terminal) run headless with ``devin -p``."""

from __future__ import annotations

from pathlib import Path

from aq_core.engine import Engine, Failure, LaunchContext, LaunchSpec, Outcome
from aq_core.hookspecs import hookimpl
from aq_core.usage import Usage

NAME = "devin"
#: The documented permission mode that auto-approves every tool call (docs: essential-commands, Modes).
YOLO_PERMISSION_MODE = "bypass"


@hookimpl
def register_engines() -> list[Engine]:
    # No resume: print mode prints no session id, and the id in the ATIF export is not documented as
    # the one `devin -r` takes.
    from aq_devin.prices import PRICES

    return [
        Engine(
            name=NAME,
            binary="devin",
            failure_classes=("auth_error", "usage_limit"),
            resumes_sessions=False,
            prices=PRICES,
            state_dirs=("~/.config/devin", "~/.local/share/devin"),
        )
    ]


@hookimpl
def launch(engine: str, ctx: LaunchContext) -> LaunchSpec | None:
    if engine != NAME:
        return None
    if ctx.executable is None:
        from aq_core.errors import AqError

        raise AqError("engine 'devin': the devin CLI is not installed (not on PATH; set AQ_DEVIN_BIN to its path)")
    # -p: single turn, no REPL, answer on stdout. Stdin is not a documented prompt source, so the
    # prompt goes through --prompt-file (which must follow -p directly: -p takes an optional value).
    argv = [ctx.executable, "-p", "--prompt-file", str(ctx.prompt_file)]
    # Print mode cannot show the workspace-trust prompt; without this an untrusted cwd fails the run.
    argv += ["--respect-workspace-trust", "false"]
    if ctx.job.yolo:
        argv += ["--permission-mode", YOLO_PERMISSION_MODE]
    if ctx.job.model:
        argv += ["--model", ctx.job.model]
    # The attempt's log path is not part of LaunchContext yet; when the core passes it, Devin writes
    # its ATIF trajectory (the only place with token figures) beside the log for parse_usage.
    log_path = getattr(ctx, "log_path", None)
    if log_path is not None:
        from aq_devin.atif import export_path

        argv.append("--export=" + str(export_path(Path(log_path))))
    return LaunchSpec(argv=argv, prompt="file")


@hookimpl
def parse_usage(engine: str, log_path: Path) -> Usage | None:
    if engine != NAME:
        return None
    # Print mode's output is the agent's answer and nothing else: no model, tokens, cost or session
    # id, so the log itself is never read for figures (a quoted summary in the answer cannot count).
    try:
        from aq_devin.atif import export_path, read_export

        usage = read_export(export_path(Path(log_path)))
    except Exception:  # parse_usage must never raise
        usage = Usage(extra={"atif_export": "unreadable"})
    return usage if usage is not None else Usage()


@hookimpl
def classify_failure(engine: str, outcome: Outcome) -> Failure | None:
    if engine != NAME:
        return None
    from aq_devin.failures import classify

    return classify(outcome)

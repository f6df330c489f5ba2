"""The aq engine plugin for Claude Code (``claude -p``): launch, usage parsing and failure classes."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from aq_core.engine import Engine, Failure, LaunchContext, LaunchSpec, Outcome
from aq_core.errors import AqError
from aq_core.hookspecs import hookimpl
from aq_core.usage import Usage

NAME = "claude"
#: ``config_error``: the CLI refused its own command line or set-up (``--dangerously-skip-permissions`` as
#: root, an unknown option, a model it cannot use). Retrying the same command cannot help.
FAILURE_CLASSES = ("auth_error", "rate_limited", "usage_limit", "config_error")
#: Sent instead of the job's prompt when a previous attempt's session is resumed.
CONTINUATION_PROMPT = (
    "Continue the task from where you stopped; the work so far is in the working tree. "
    "Check what is already done before changing anything."
)
# Session ids are UUIDs; anything else (or a value that would read as an option) is not passed on.
_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


@hookimpl
def register_engines() -> list[Engine]:
    from aq_claude.prices import PRICES

    return [
        Engine(
            name=NAME,
            binary="claude",
            failure_classes=FAILURE_CLASSES,
            resumes_sessions=True,
            prices=PRICES,
            state_dirs=("~/.claude", "~/.claude.json", "~/.local/state/claude"),
        )
    ]


def _running_as_root() -> bool:
    """True when the engine will run as root (the core spawns it as the runner's own user)."""
    geteuid = getattr(os, "geteuid", None)
    return geteuid is not None and geteuid() == 0


def _budget(value: float | None) -> str | None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value <= 0:
        return None
    return f"{value:.6f}".rstrip("0").rstrip(".")


@hookimpl
def launch(engine: str, ctx: LaunchContext) -> LaunchSpec | None:
    if engine != NAME:
        return None
    if ctx.executable is None:
        raise AqError("claude: executable not found (install @anthropic-ai/claude-code or set AQ_CLAUDE_BIN)")
    # Headless print mode; stream-json survives a kill (every record is flushed as it happens) and needs --verbose.
    argv = [ctx.executable, "-p", "--output-format", "stream-json", "--verbose"]
    env: dict[str, str] = {}
    if ctx.job.yolo:
        argv.append("--dangerously-skip-permissions")
        if _running_as_root():
            # Claude Code 2.1.197 exits 1 ("cannot be used with root/sudo privileges") unless IS_SANDBOX=1 says the
            # host is a deliberate sandbox; `--permission-mode bypassPermissions` is refused the same way.
            env["IS_SANDBOX"] = "1"
    if ctx.job.model:
        argv += ["--model", ctx.job.model]
    prompt_text = None
    session = ctx.session_id
    if session and _SESSION_ID.fullmatch(session):
        argv += ["--resume", session]
        prompt_text = CONTINUATION_PROMPT
    budget = _budget(ctx.max_cost_usd)
    if budget is not None:
        argv += ["--max-budget-usd", budget]
    return LaunchSpec(argv=argv, env=env, prompt="stdin", prompt_text=prompt_text)


@hookimpl
def parse_usage(engine: str, log_path: Path) -> Usage | None:
    if engine != NAME:
        return None
    from aq_claude.usage import parse_log

    try:
        return parse_log(log_path)
    except Exception:  # the contract: never raise, whatever the log holds; an unreadable log says nothing
        return Usage()


@hookimpl
def classify_failure(engine: str, outcome: Outcome) -> Failure | None:
    if engine != NAME:
        return None
    from aq_claude.limits import classify

    try:
        return classify(outcome)
    except Exception:  # an unreadable log is not ours to judge: let the core say timeout/crash/ok
        return None

"""Build the command line that runs the GitHub Copilot CLI headless for one attempt."""

from __future__ import annotations

import os
import re

from aq_core.engine import LaunchContext, LaunchSpec
from aq_core.errors import AqError

NAME = "copilot"

#: ``yolo: true``: every permission, as ``--yolo``/``--allow-all`` (spelled out so ``ps`` shows what is granted).
YOLO_FLAGS = ("--allow-all-tools", "--allow-all-paths", "--allow-all-urls")
#: ``yolo: false``: file edits inside the working directory are approved, everything else is denied without
#: asking (prompt mode never waits for an answer: "Denied, no one to approve").
SAFE_FLAGS = ("--allow-tool=write",)

#: Copilot session ids are UUIDs; anything else is not ours to pass to ``--session-id``.
SESSION_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

#: Sent on a resumed session. It restates the task because ``--session-id`` of a session this host no longer
#: has (another host, a cleaned ``~/.copilot``) starts an empty session under that id.
CONTINUATION = (
    "This continues an earlier attempt at the same task, which stopped before it was finished (for example "
    "at a usage limit or a timeout). Check what is already done in the working directory and in this "
    "conversation, then finish the remaining work without starting over. The task, as first given:\n\n"
)

#: A user's own OpenTelemetry set-up wins: aq then adds no exporter of its own.
USER_OTEL_VARS = (
    "COPILOT_OTEL_ENABLED",
    "COPILOT_OTEL_EXPORTER_TYPE",
    "COPILOT_OTEL_FILE_EXPORTER_PATH",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)
#: Set to ``0`` to keep OpenTelemetry spans out of the attempt logs (tokens are then absent).
OPT_OUT_VAR = "AQ_COPILOT_OTEL"
STDOUT_PATH = "/dev/stdout"


def otel_env(environ: os._Environ[str] | dict[str, str] | None = None) -> dict[str, str]:
    """Return the variables that make Copilot append its OpenTelemetry spans to the attempt's log.

    Copilot 1.0.102 opens the exporter path with ``O_APPEND`` (checked with strace), and the core opens the
    log with ``O_APPEND`` too, so span lines land after the JSONL events without overwriting them.
    """
    env = os.environ if environ is None else environ
    if env.get(OPT_OUT_VAR, "").strip().lower() in ("0", "false", "no", "off"):
        return {}
    if any(env.get(name) for name in USER_OTEL_VARS):
        return {}
    if not os.path.exists(STDOUT_PATH):
        return {}  # never let the exporter create a regular file where the device should be
    return {"COPILOT_OTEL_EXPORTER_TYPE": "file", "COPILOT_OTEL_FILE_EXPORTER_PATH": STDOUT_PATH}


def build(ctx: LaunchContext) -> LaunchSpec:
    """Return how to start ``copilot`` for this attempt: prompt on stdin, JSONL events on stdout."""
    if ctx.executable is None:
        raise AqError(
            "engine copilot: executable 'copilot' not found on PATH (install @github/copilot or set AQ_COPILOT_BIN)"
        )
    job = ctx.job
    # No -p: a prompt piped on stdin runs prompt mode (non-interactive, exits when done), and argv stays clean.
    argv = [ctx.executable, "--output-format", "json"]
    env: dict[str, str] = {}
    if job.yolo:
        argv.extend(YOLO_FLAGS)
    else:
        argv.extend(SAFE_FLAGS)
        # COPILOT_ALLOW_ALL in the runner's environment would grant everything behind the job's back.
        env["COPILOT_ALLOW_ALL"] = "false"
    if job.model:
        argv.append(f"--model={job.model}")
    prompt_text = None
    if ctx.session_id and SESSION_ID.fullmatch(ctx.session_id):
        argv.append(f"--session-id={ctx.session_id}")
        prompt_text = CONTINUATION + job.prompt
    if ctx.log_path is not None:
        # Exact tokens per model, written at exit (even when the login fails); the `=` form keeps a path that
        # starts with "-" a value.
        from aq_copilot.usage_file import side_file

        argv.append(f"--usage-output-file={side_file(ctx.log_path)}")
    env.update(otel_env())
    return LaunchSpec(argv=argv, env=env, prompt="stdin", prompt_text=prompt_text)

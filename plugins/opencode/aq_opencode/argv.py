"""Build the ``opencode run`` command line for one attempt (flags checked against opencode 1.18.33 ``run --help``)."""

from __future__ import annotations

import re

from aq_core.engine import LaunchContext, LaunchSpec
from aq_core.errors import AqError

#: opencode session ids look like ``ses_dbaf14d85ffenrVhoJzFWtTLg1``; anything else is not resumed.
SESSION_ID = re.compile(r"ses_[0-9A-Za-z]{8,64}")

#: Sent on a resumed session instead of the job's prompt: the session already holds the task.
CONTINUE_PROMPT = (
    "Continue the task from this session. The previous run stopped before it was finished (a usage limit, a "
    "timeout or a crash). Check the current state of the working tree, then finish the original task."
)


#: opencode's own log on stderr, one ``timestamp=... level=... message=...`` line per step: it names the model of
#: each call (no event does) and the "stream error" of a model call opencode then sleeps on (it honours a
#: ``retry-after`` of hours without printing an event).
LOG_FLAGS = ("--print-logs", "--log-level=INFO")


def build(ctx: LaunchContext) -> LaunchSpec:
    """Return the launch spec: ``opencode run --format json ...`` with the prompt on stdin."""
    if ctx.executable is None:
        raise AqError(
            "engine 'opencode' is not installed: no `opencode` on PATH (install opencode-ai or set AQ_OPENCODE_BIN)"
        )
    job = ctx.job
    # json: one raw event per line (step_start, text, tool_use, step_finish, error). A title given here spares
    # the extra model call opencode otherwise makes to name the session (its tokens are in no event).
    argv = [ctx.executable, "run", "--format=json", f"--title=aq {job.id}", *LOG_FLAGS]
    if job.yolo:
        # Without --auto, `run` rejects every permission request that asks (paths outside the project, the
        # doom-loop guard); edits and commands that opencode's own config allows still run.
        argv.append("--auto")
    if job.model:
        argv.append(f"--model={job.model}")  # provider/model; the = form so a value is never read as a flag
    session = ctx.session_id if ctx.session_id and SESSION_ID.fullmatch(ctx.session_id) else None
    if session:
        argv.append(f"--session={session}")
    return LaunchSpec(argv=argv, prompt="stdin", prompt_text=CONTINUE_PROMPT if session else None)

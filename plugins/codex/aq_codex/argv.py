"""Build the `codex exec` command line for one attempt (flags checked against codex-cli 0.171.0 `--help`).

Named `argv`, not `launch`: a submodule called like a hook would shadow the hook function in the package.
"""

from __future__ import annotations

import re

from aq_core.engine import LaunchContext, LaunchSpec
from aq_core.errors import AqError

#: What ``exec resume`` is sent instead of the job's prompt: the thread already holds the task.
CONTINUE_PROMPT = (
    "Continue the task from this session. The previous run stopped before it was finished (a usage limit, a "
    "timeout or a crash). Check the current state of the working tree, then finish the original task."
)
# Codex thread ids are UUIDs; `exec resume` also takes a thread name. Anything else is not resumed.
SESSION_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z._:-]{0,127}")
WORKSPACE_WRITE = "workspace-write"


def build(ctx: LaunchContext) -> LaunchSpec:
    """Return the launch spec: ``codex exec --json ... -`` with the prompt on stdin, or ``exec resume``."""
    if ctx.executable is None:
        raise AqError("engine 'codex' is not installed: no `codex` on PATH (install @openai/codex or set AQ_CODEX_BIN)")
    session = ctx.session_id if ctx.session_id and SESSION_ID.fullmatch(ctx.session_id) else None
    argv = [ctx.executable, "exec"]
    if session:
        argv.append("resume")
    # JSONL events on stdout; outside a git repository `exec` refuses to start without the check skipped, and aq
    # already decides where the job runs (its checkpoints work without git too).
    argv += ["--json", "--skip-git-repo-check"]
    if ctx.job.yolo:
        argv.append("--dangerously-bypass-approvals-and-sandbox")
    elif session:
        # `exec resume` has no --sandbox flag and does not keep the first run's sandbox: set it through config.
        argv += ["-c", f'sandbox_mode="{WORKSPACE_WRITE}"']
    else:
        # `exec` never asks for approval (its approval policy is fixed to "never"); the default sandbox is
        # read-only, which would make every edit fail, so the agent may write inside the work tree.
        argv += ["--sandbox", WORKSPACE_WRITE]
    if ctx.job.model:
        argv += ["-m", ctx.job.model]
    # "--" ends the options, so neither a thread id nor "-" can be read as a flag; "-" reads the prompt from stdin.
    argv.append("--")
    if session:
        argv.append(session)
    argv.append("-")
    return LaunchSpec(argv=argv, prompt="stdin", prompt_text=CONTINUE_PROMPT if session else None)

"""Build the ``gemini`` command line for one attempt (flags checked against Gemini CLI 0.61.0 ``--help``).

Named ``argv``, not ``launch``: a submodule called like a hook would shadow the hook function in the package.
"""

from __future__ import annotations

import re

from aq_core.engine import LaunchContext, LaunchSpec
from aq_core.errors import AqError

#: Sent instead of the job's prompt when a previous attempt's session is resumed.
CONTINUE_PROMPT = (
    "Continue the task from where you stopped; the work so far is in the working tree. "
    "Check what is already done before changing anything."
)
# Gemini CLI session ids are UUIDs (`--resume` also takes "latest" or an index: never passed on).
SESSION_ID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")


def build(ctx: LaunchContext) -> LaunchSpec:
    """``gemini -o stream-json --skip-trust [--approval-mode yolo] [-m M] [--resume ID]``, the prompt on stdin."""
    if ctx.executable is None:
        raise AqError("gemini: executable not found (install @google/gemini-cli or set AQ_GEMINI_BIN)")
    # A piped stdin makes the CLI headless without -p; stream-json flushes each event, so a killed run keeps what
    # it printed. --skip-trust trusts aq's work tree for this session only: untrusted, the CLI exits 55 (and
    # turns yolo off).
    argv = [ctx.executable, "-o", "stream-json", "--skip-trust"]
    if ctx.job.yolo:
        argv += ["--approval-mode", "yolo"]
    if ctx.job.model:
        argv += ["-m", ctx.job.model]
    prompt_text = None
    if ctx.session_id and SESSION_ID.fullmatch(ctx.session_id):
        argv += ["--resume", ctx.session_id]
        prompt_text = CONTINUE_PROMPT
    # The CLI relaunches itself as a child node process (for a bigger heap); that child outlives a kill of the
    # parent, and the parent ignores SIGTERM. One process is what the core can supervise.
    env = {"GEMINI_CLI_NO_RELAUNCH": "true"}
    return LaunchSpec(argv=argv, env=env, prompt="stdin", prompt_text=prompt_text)

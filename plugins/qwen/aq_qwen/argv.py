"""Build the ``qwen`` command line for one attempt (flags checked against Qwen Code 0.24.4 ``--help``).

Named ``argv``, not ``launch``: a submodule called like a hook would shadow the hook function in the package.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from aq_core.engine import LaunchContext, LaunchSpec
from aq_core.errors import AqError

#: Sent instead of the job's prompt when a previous attempt's session is resumed.
CONTINUE_PROMPT = (
    "Continue the task from where you stopped; the work so far is in the working tree. "
    "Check what is already done before changing anything."
)
#: ``--auth-type`` choices of 0.24.4; ``plugins: {qwen: {auth_type: ...}}`` in config.yaml picks one.
AUTH_TYPES = ("openai", "openai-responses", "anthropic", "qwen-oauth", "gemini", "vertex-ai")
DEFAULT_AUTH_TYPE = "openai"
SESSION_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z._:-]{0,127}")


def build(ctx: LaunchContext) -> LaunchSpec:
    """``qwen -o stream-json --auth-type T [--approval-mode yolo] [-m M] [--resume ID]``, the prompt on stdin."""
    if ctx.executable is None:
        raise AqError("qwen: executable not found (install @qwen-code/qwen-code or set AQ_QWEN_BIN)")
    auth = ctx.settings.get("auth_type", DEFAULT_AUTH_TYPE) if isinstance(ctx.settings, Mapping) else DEFAULT_AUTH_TYPE
    if auth not in AUTH_TYPES:
        raise AqError(f"qwen: plugins.qwen.auth_type {auth!r} is not one of {', '.join(AUTH_TYPES)}")
    # Without --auth-type a key alone is not enough: 0.24.4 exits 1 ("No auth type is selected").
    argv = [ctx.executable, "-o", "stream-json", "--auth-type", auth]
    if ctx.job.yolo:
        argv += ["--approval-mode", "yolo"]
    if ctx.job.model:
        argv += ["-m", ctx.job.model]
    prompt_text = None
    if ctx.session_id and SESSION_ID.fullmatch(ctx.session_id):
        argv += ["--resume", ctx.session_id]
        prompt_text = CONTINUE_PROMPT
    return LaunchSpec(argv=argv, prompt="stdin", prompt_text=prompt_text)

"""Build the aider command line for one attempt (flags checked against aider 0.86.2 ``--help``).

Named ``argv``, not ``launch``: a submodule called like a hook would shadow the hook function in the package.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from aq_core.engine import LaunchContext, LaunchSpec
from aq_core.errors import AqError

#: Headless, quiet and offline-safe: no prompts (``--yes-always`` answers aider's confirmations, e.g. "Create new
#: file?"), plain unwrapped output, no update or analytics calls, no release notes, no URL scraping, and no
#: commits of aider's own: aq checkpoints the work on ``aq/wip/<id>`` itself.
BASE_FLAGS = (
    "--yes-always",
    "--no-pretty",
    "--no-stream",
    "--no-fancy-input",
    "--no-check-update",
    "--no-analytics",
    "--no-show-release-notes",
    "--no-show-model-warnings",
    "--no-detect-urls",
    "--no-auto-commits",
    "--no-dirty-commits",
    # aider would append `.aider*` to the repository's .gitignore; its files are kept out of the work tree instead.
    "--no-gitignore",
    # The repository map caches tags in `.aider.tags.cache.v4/` at the repository root (no flag moves it).
    "--map-tokens=0",
)
#: Where aider looks for a default model when none is given (aider/onboarding.py ``try_to_select_default_model``).
#: With none of them, aider offers an OpenRouter browser login, ``--yes-always`` accepts, and it waits 5 minutes.
MODEL_SOURCES = (
    "AIDER_MODEL",
    "OPENROUTER_API_KEY",
    "ANTHROPIC_API_KEY",
    "DEEPSEEK_API_KEY",
    "OPENAI_API_KEY",
    "GEMINI_API_KEY",
    "VERTEXAI_PROJECT",
)
#: aider's own config and key files, which may name a model or hold keys: searched in the work tree and HOME.
CONFIG_FILES = (".aider.conf.yml", ".env")
CHAT_SUFFIX = ".aider-chat.md"


def build(ctx: LaunchContext, environ: Mapping[str, str] | None = None) -> LaunchSpec:
    """Return the launch spec: ``aider --message-file <prompt file> ...`` (aider takes no prompt on stdin)."""
    if ctx.executable is None:
        raise AqError(
            "engine 'aider' is not installed: no `aider` on PATH (pip install aider-chat or set AQ_AIDER_BIN)"
        )
    env = os.environ if environ is None else environ
    job = ctx.job
    if not job.model and not _has_model_source(env, ctx.workdir):
        raise AqError(
            "engine aider: no model: set `model:` in the job or an API key (e.g. ANTHROPIC_API_KEY); "
            "aider would wait 5 minutes for a browser login"
        )
    # The chat history holds the prompt and the answer: next to the attempt's log (a private folder), never in
    # the repository where the checkpoint would commit it. The input history only repeats the prompt.
    chat = f"{ctx.log_path}{CHAT_SUFFIX}" if ctx.log_path is not None else os.devnull
    argv = [
        ctx.executable,
        "--message-file",
        str(ctx.prompt_file),
        *BASE_FLAGS,
        f"--chat-history-file={chat}",
        f"--input-history-file={os.devnull}",
    ]
    if job.model:
        argv.append(f"--model={job.model}")
    # COLUMNS: aider's console wraps at 80 columns when not on a terminal, splitting its usage and error lines.
    # BROWSER: with --yes-always aider opens its help URLs after an error; unattended, nothing may pop up.
    return LaunchSpec(argv=argv, env={"COLUMNS": "4000", "BROWSER": "true"}, prompt="file")


def _has_model_source(env: Mapping[str, str], workdir: Path) -> bool:
    if any(env.get(name) for name in MODEL_SOURCES):
        return True
    home = env.get("HOME")
    places = [workdir, *([Path(home)] if home else [])]
    return any((place / name).is_file() for place in places for name in CONFIG_FILES)

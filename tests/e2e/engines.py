"""How each real engine CLI is pointed at the scripted model server: its environment and config files in a fresh
HOME (the facts of ``realcli/e2e.md``), and the model each end-to-end job asks for."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from e2e.model_server import ModelServer

#: The system prompt of Qwen Code's background memory extractor (its calls are not the job's work).
QWEN_EXTRACTOR = "managed memory extraction subagent"


@dataclass(frozen=True)
class Setup:
    model: str
    #: Text in the request body of a background agent whose calls the engine does not count for the job.
    background: str | None = None


SETUPS = {
    "claude": Setup(model="claude-sonnet-4-5"),
    # A model codex 0.171 gives only its shell tool (exec_command); priced by the codex plugin as gpt-5.
    "codex": Setup(model="gpt-5-codex"),
    "gemini": Setup(model="gemini-2.5-flash"),
    "qwen": Setup(model="qwen3-coder-plus", background=QWEN_EXTRACTOR),
}


def environment(engine: str, server: ModelServer, home: Path, give_up_at_once: bool = False) -> dict[str, str]:
    """The variables (and, in ``home``, the config files) that point ``engine`` at ``server`` and keep it quiet.

    ``give_up_at_once`` lowers the CLI's own retries of a 429 (gemini retries 10 times, qwen 7 times plus 10
    stream retries) so a limit test sees what the CLI prints when it gives up, without waiting for minutes."""
    env = {"HOME": str(home), "TZ": "UTC"}
    if engine == "claude":
        env.update(
            ANTHROPIC_BASE_URL=server.url,
            ANTHROPIC_API_KEY="sk-ant-scripted",
            CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
            DISABLE_TELEMETRY="1",
            DISABLE_ERROR_REPORTING="1",
            DISABLE_AUTOUPDATER="1",
        )
    elif engine == "codex":
        codex_home = home / ".codex"
        codex_home.mkdir(parents=True, exist_ok=True)
        (codex_home / "config.toml").write_text(
            'model_provider = "scripted"\n'
            "check_for_update_on_startup = false\n"
            "[model_providers.scripted]\n"
            'name = "scripted"\n'
            f'base_url = "{server.url}/v1"\n'
            'env_key = "SCRIPTED_API_KEY"\n'
            'wire_api = "responses"\n'
            "request_max_retries = 0\n"
            "stream_max_retries = 0\n"
            "[analytics]\n"
            "enabled = false\n"
        )
        env.update(CODEX_HOME=str(codex_home), SCRIPTED_API_KEY="sk-scripted")
    elif engine == "gemini":
        general: dict[str, object] = {"disableAutoUpdate": True}
        if give_up_at_once:
            general["maxAttempts"] = 1
        settings = {
            "security": {"auth": {"selectedType": "gemini-api-key"}},
            "telemetry": {"enabled": False},
            "privacy": {"usageStatisticsEnabled": False},
            "general": general,
        }
        (home / ".gemini").mkdir(parents=True, exist_ok=True)
        (home / ".gemini" / "settings.json").write_text(json.dumps(settings))
        env.update(GEMINI_API_KEY="scripted-key", GOOGLE_GEMINI_BASE_URL=server.url)
    elif engine == "qwen":
        if give_up_at_once:
            (home / ".qwen").mkdir(parents=True, exist_ok=True)
            settings = {"model": {"generationConfig": {"maxRetries": 0}}}
            (home / ".qwen" / "settings.json").write_text(json.dumps(settings))
        env.update(
            OPENAI_API_KEY="sk-scripted", OPENAI_BASE_URL=server.url + "/v1", QWEN_CODE_SUPPRESS_YOLO_WARNING="1"
        )
    else:
        raise KeyError(engine)
    return env

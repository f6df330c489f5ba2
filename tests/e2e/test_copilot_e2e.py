"""GitHub Copilot CLI 1.0.102, the real CLI, run by ``aq run`` against the scripted model server.

Copilot can be pointed at a local model without a GitHub login: BYOK (``copilot help providers``) with
``COPILOT_PROVIDER_BASE_URL``, ``COPILOT_PROVIDER_TYPE`` (``anthropic`` here, so cache writes and thinking tokens
are on the wire; ``openai`` for the Chat Completions limit) and ``COPILOT_PROVIDER_API_KEY``. Its first start
unpacks about 235 MB under ``$XDG_CACHE_HOME/copilot``: that cache sits beside the installed CLI, not in the
test's HOME, so it is unpacked once.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import state_of, stub

from e2e import clis
from e2e.model_server import ModelServer, Tokens
from e2e.queue import add, engines, executable, insights, log_text, queue, repo, run_once, run_until_paused, wip_files

MODEL = "claude-sonnet-4.5"


@pytest.fixture
def server() -> ModelServer:
    usage = [
        Tokens(input=1200, cached=300, cache_write=200, output=40, reasoning=6),
        Tokens(input=150, cached=1500, output=12, reasoning=3),
    ]
    with ModelServer(canary="CANARY-e2e-5b1f", usage=usage) as srv:
        yield srv


def copilot_env(server: ModelServer, provider: str = "anthropic") -> dict[str, str]:
    return {
        "AQ_COPILOT_BIN": executable("copilot"),
        "COPILOT_PROVIDER_TYPE": provider,
        "COPILOT_PROVIDER_BASE_URL": server.url if provider == "anthropic" else f"{server.url}/v1",
        "COPILOT_PROVIDER_API_KEY": "scripted-key",
        "XDG_CACHE_HOME": str(clis.cache_dir() / "copilot-xdg-cache"),
    }


def test_copilot_writes_the_file_and_aq_records_the_usage_file_figures(tmp_path: Path, server: ModelServer) -> None:
    env = copilot_env(server)
    root, work = queue(tmp_path), repo(tmp_path)
    add(root, tmp_path, "cp1", {"engine": "copilot", "model": MODEL, "cwd": str(work), "timeout": "180s"}, env)
    run_once(root, env)

    assert state_of(root, "cp1") == "done", log_text(root, "cp1")
    assert wip_files(work, "cp1")["hello.txt"] == server.content.encode()
    assert all(r.has_canary for r in server.model_requests() if r.answer and r.answer.kind != "side")
    usage_file = root / "logs" / "cp1.1.log.usage.json"
    assert json.loads(usage_file.read_text())["modelMetrics"], "Copilot wrote its usage file beside the log"

    record = insights(root, "cp1")
    expected = server.expected_usage()
    assert {k: record[k] for k in expected} == expected  # cache writes in tokens_in, thinking in tokens_out
    assert record["model"] == MODEL and record["turns"] == 2 and record["tool_calls"] == 1
    assert record.get("cost_usd") is None or record.get("estimated"), "Copilot prints no USD: only an estimate"


def test_a_usage_limit_through_copilot_pauses_only_copilot(tmp_path: Path, server: ModelServer) -> None:
    server.limit = "usage"  # OpenAI 429 usage_limit_reached: Copilot ends at once with a session.error
    env = copilot_env(server, provider="openai")
    root, work = queue(tmp_path), repo(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    add(root, tmp_path, "cp2", {"engine": "copilot", "model": MODEL, "cwd": str(work), "retry": {"max": 2}}, env)
    add(root, tmp_path, "cmd", {"engine": "command", "command": stub(), "cwd": str(other)}, env)
    m = run_until_paused(root, "cp2", env, done=("cmd",))

    assert m["pause_reason"] == "usage_limit" and m["pause_engine"] == "copilot"
    assert m.get("retries", "0") == "0", "a limit spends no retry"
    assert "The usage limit has been reached" in m["detail"]
    status = engines(root)
    assert status["copilot"]["pause_reason"] == "usage_limit"
    assert not status.get("command", {}).get("paused_until"), "only the engine that hit the limit pauses"
    assert state_of(root, "cmd") == "done" and state_of(root, "cp2") == "inbox"

"""aider 0.86.2, the real CLI, run by ``aq run`` against the scripted model server (Chat Completions).

aider sends no tools: it edits files from the answer's text. The server here answers every model call with a
whole-file edit in aider's ``whole`` format (what aider asks an unknown model for), and aider writes the file
itself. It is pointed at the server by ``OPENAI_API_BASE``; the model's price comes from
``~/.aider.model.metadata.json`` in the test's own HOME, so aider prints a cost.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from gitutil import git
from helpers import state_of, stub

from e2e import wire
from e2e.model_server import ModelServer, Tokens
from e2e.queue import add, engines, executable, insights, log_text, queue, repo, run_once, run_until_paused, wip_files

MODEL = "openai/scripted-model"
#: USD per token: 600 tokens in and 50 out cost exactly $0.0017, which aider prints as "$0.0017".
INPUT_COST, OUTPUT_COST = 2e-6, 1e-5


class WholeFileServer(ModelServer):
    """Answers every model call with the file in aider's ``whole`` edit format (a main answer, not a side one)."""

    def decide(self, call: wire.Call) -> tuple[str, Tokens, Any]:
        with self._lock:
            tokens = self.usage[self._main % len(self.usage)]
            self._main += 1
        return "tool", tokens, f"{self.file}\n```\n{self.content}```\n"


@pytest.fixture
def server() -> Any:
    with WholeFileServer(canary="CANARY-e2e-5b1f", usage=[Tokens(input=600, output=50)]) as srv:
        yield srv


def aider_env(server: ModelServer) -> dict[str, str]:
    metadata = {
        MODEL: {
            "max_tokens": 8192,
            "max_input_tokens": 128000,
            "max_output_tokens": 8192,
            "input_cost_per_token": INPUT_COST,
            "output_cost_per_token": OUTPUT_COST,
            "litellm_provider": "openai",
            "mode": "chat",
        }
    }
    (Path(os.environ["HOME"]) / ".aider.model.metadata.json").write_text(json.dumps(metadata))
    return {
        "AQ_AIDER_BIN": executable("aider"),
        "OPENAI_API_KEY": "scripted-key",
        "OPENAI_API_BASE": f"{server.url}/v1",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }


def test_aider_writes_the_file_and_nothing_of_its_own_reaches_the_wip_branch(tmp_path: Path, server: Any) -> None:
    env = aider_env(server)
    root, work = queue(tmp_path), repo(tmp_path)
    add(root, tmp_path, "ai1", {"engine": "aider", "model": MODEL, "cwd": str(work), "timeout": "180s"}, env)
    run_once(root, env)

    assert state_of(root, "ai1") == "done", log_text(root, "ai1")
    files = wip_files(work, "ai1")
    assert files["hello.txt"] == server.content.encode()
    assert not [name for name in files if name.startswith((".aider", ".gitignore"))], sorted(files)
    assert not [p.name for p in work.iterdir() if p.name.startswith(".aider")], "aider wrote into the repository"
    assert git(work, "log", "--format=%s", "main") == "initial"
    authors = git(work, "log", "--format=%an %cn", "main..aq/wip/ai1").splitlines()
    assert authors and not [a for a in authors if "aider" in a], "aider committed nothing of its own"
    chat = (root / "logs").glob("ai1.1.log.aider-chat.md")
    assert any("CANARY-e2e-5b1f" in p.read_text() for p in chat), "the chat history is kept beside the log"
    assert all(r.has_canary for r in server.model_requests())

    record = insights(root, "ai1")
    expected = server.expected_usage()
    assert {k: record[k] for k in expected} == expected  # below 1000: aider prints exact counts
    t = server.sum_tokens()
    assert record["cost_usd"] == round(t.tokens_in * INPUT_COST + t.tokens_out * OUTPUT_COST, 6) == 0.0017
    assert not record.get("estimated")
    assert record["model"] == MODEL and record["turns"] == 1


def test_a_quota_error_through_aider_is_a_usage_limit_although_aider_exits_0(tmp_path: Path, server: Any) -> None:
    # HTTP 429 usage_limit_reached: aider retries for about 90 s, prints the error and exits 0.
    server.limit = "usage"
    env = aider_env(server)
    root, work = queue(tmp_path), repo(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    add(root, tmp_path, "ai2", {"engine": "aider", "model": MODEL, "cwd": str(work), "retry": {"max": 2}}, env)
    add(root, tmp_path, "cmd", {"engine": "command", "command": stub(), "cwd": str(other)}, env)
    m = run_until_paused(root, "ai2", env, timeout=300, done=("cmd",))

    assert m["pause_reason"] == "usage_limit" and m["pause_engine"] == "aider"
    assert m.get("retries", "0") == "0" and m.get("exit") == "0", "aider exited 0; no retry spent"
    assert "litellm.RateLimitError" in log_text(root, "ai2") and "usage limit has been reached" in m["detail"]
    status = engines(root)
    assert status["aider"]["pause_reason"] == "usage_limit"
    assert not status.get("command", {}).get("paused_until"), "only the engine that hit the limit pauses"
    assert state_of(root, "cmd") == "done" and state_of(root, "ai2") == "inbox"

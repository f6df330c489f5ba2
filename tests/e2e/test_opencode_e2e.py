"""opencode 1.18.33, the real CLI, run by ``aq run`` against the scripted model server (Chat Completions).

opencode is pointed at the server through its own config (``OPENCODE_CONFIG_CONTENT``): an
``@ai-sdk/openai-compatible`` provider whose ``baseURL`` is the server, with a price per token so opencode
prints a cost. HOME is the test's own, so opencode's ``~/.config/opencode`` and its data stay there.
"""

from __future__ import annotations

import json
from pathlib import Path

from helpers import meta, state_of, stub

from e2e.model_server import ModelServer
from e2e.queue import add, engines, executable, insights, log_text, queue, repo, run_once, run_until_paused, wip_files

#: USD per million tokens, opencode's `cost` keys.
PRICE = {"input": 3.0, "output": 15.0, "cache_read": 0.3, "cache_write": 3.75}
MODEL = "scripted/scripted-model"


def opencode_env(server: ModelServer, price: bool = True) -> dict[str, str]:
    model: dict = {"name": "scripted-model", **({"cost": PRICE} if price else {})}
    provider = {
        "npm": "@ai-sdk/openai-compatible",
        "name": "scripted",
        "options": {"baseURL": f"{server.url}/v1", "apiKey": "scripted-key"},
        "models": {"scripted-model": model},
    }
    config = {"$schema": "https://opencode.ai/config.json", "autoupdate": False, "provider": {"scripted": provider}}
    return {
        "AQ_OPENCODE_BIN": executable("opencode"),
        "OPENCODE_CONFIG_CONTENT": json.dumps(config),
        "OPENCODE_DISABLE_MODELS_FETCH": "1",
        "OPENCODE_DISABLE_AUTOUPDATE": "1",
    }


def test_opencode_writes_the_file_and_aq_records_its_usage_and_cost(tmp_path: Path, model_server: ModelServer) -> None:
    env = opencode_env(model_server)
    root, work = queue(tmp_path), repo(tmp_path)
    add(root, tmp_path, "oc1", {"engine": "opencode", "model": MODEL, "cwd": str(work), "timeout": "120s"}, env)
    run_once(root, env)

    assert state_of(root, "oc1") == "done", log_text(root, "oc1")
    assert wip_files(work, "oc1")["hello.txt"] == model_server.content.encode()
    # The title on the command line spares opencode's naming call: the two calls of the session are all.
    assert [a.kind for a in model_server.answers()] == ["tool", "final"]
    assert all(r.has_canary for r in model_server.model_requests()), "the prompt reached the model on stdin"

    record = insights(root, "oc1")
    expected = model_server.expected_usage()
    assert {k: record[k] for k in expected} == expected
    t = model_server.sum_tokens()
    cost = (
        t.input * PRICE["input"]
        + t.cached * PRICE["cache_read"]
        + t.cache_write * PRICE["cache_write"]
        + t.tokens_out * PRICE["output"]
    ) / 1e6
    assert record["cost_usd"] == round(cost, 6) and not record.get("estimated")
    assert record["model"] == MODEL and record["turns"] == 2 and record["tool_calls"] == 1
    assert "CANARY" not in json.dumps(record)


def test_a_rate_limit_through_opencode_pauses_only_opencode_and_spends_no_retry(
    tmp_path: Path, model_server: ModelServer
) -> None:
    model_server.limit = "rate"  # HTTP 429 rate_limit_exceeded, retry-after 1 s: opencode retries, then reports
    model_server.retry_after = 1
    env = opencode_env(model_server)
    # The reset is 1 s after opencode's error, and opencode may take longer than that to exit: a reset
    # already past when aq reads it is not believed (docs/limits.md), and the engine is then held for
    # ``limit_hold``, kept short here so the run after the limit does not wait the default 5 minutes.
    root, work = queue(tmp_path, "limit_margin: 0\nlimit_hold: 1s\n"), repo(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    add(root, tmp_path, "oc2", {"engine": "opencode", "model": MODEL, "cwd": str(work), "retry": {"max": 2}}, env)
    add(root, tmp_path, "cmd", {"engine": "command", "command": stub(), "cwd": str(other)}, env)
    m = run_until_paused(root, "oc2", env)

    assert m["pause_reason"] == "rate_limited" and m["pause_engine"] == "opencode"
    assert m.get("retries", "0") == "0", "a limit spends no retry"
    assert "429" in log_text(root, "oc2") and "Rate limit reached" in m["detail"]
    # The reset the server announced (resets_in_seconds) is recorded.
    assert float(m["reset_at"]) > 0
    paused = engines(root)
    assert paused["opencode"]["pause_reason"] == "rate_limited"
    assert not paused.get("command", {}).get("paused_until"), "only the engine that hit the limit pauses"

    # The limit is over: the next run finishes both, the opencode job on its second attempt, still no retry.
    model_server.limit = None
    run_once(root, env)
    assert state_of(root, "cmd") == "done" and state_of(root, "oc2") == "done"
    after = meta(root, "oc2")
    assert after["attempts"] == "2" and after.get("retries", "0") == "0"
    assert wip_files(work, "oc2")["hello.txt"] == model_server.content.encode()


def test_a_usage_limit_opencode_sleeps_on_is_classed_when_the_timeout_ends_it(
    tmp_path: Path, model_server: ModelServer
) -> None:
    # usage_limit_reached with retry-after = the window's 3 hours: opencode sleeps silently on it. aq's timeout
    # ends the attempt, and opencode's own "stream error" log line says why.
    model_server.limit = "usage"
    env = opencode_env(model_server)
    root, work = queue(tmp_path), repo(tmp_path)
    # opencode takes 25 to 30 s here from its start to its first request on a new home (its instance, the
    # project's copy): the timeout must leave it time to meet the limit it then sleeps on.
    add(root, tmp_path, "oc3", {"engine": "opencode", "model": MODEL, "cwd": str(work), "timeout": "60s"}, env)
    m = run_until_paused(root, "oc3", env)

    assert m["pause_reason"] == "usage_limit" and m.get("retries", "0") == "0"
    assert "The usage limit has been reached" in m["detail"]
    assert engines(root)["opencode"]["pause_reason"] == "usage_limit"

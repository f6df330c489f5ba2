"""The real engine CLIs, end to end through aq: each pinned CLI runs a real session against the scripted model
server (the model asks for a file to be written, the CLI writes it with its own tool), through ``aq run --once``
on a real queue and a real git repository. The job ends ``ok``, the file is committed on ``aq/wip/<id>``, and
``aq insights`` reports exactly the server's token numbers by aq's conventions; the cost is the CLI's own where
it prints one (claude) and aq's marked estimate from the plugin's prices elsewhere. The prompt's canary never
reaches meta, argv or aq's own log lines."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import pytest
from helpers import aq, aq_popen, git, git_repo, meta, state_of, wait_until, write_job

from e2e.engines import SETUPS, environment
from e2e.model_server import ModelServer, Tokens

CANARY = "CANARY-e2e-3f9a1c"
CONTENT = "hello from the scripted model\n"
#: Distinct numbers per call, with cache reads, cache writes and reasoning, so a mixed-up field shows.
SCRIPT = [
    Tokens(input=1200, cached=300, cache_write=0, output=40, reasoning=25),
    Tokens(input=150, cached=1500, cache_write=0, output=12, reasoning=5),
]
#: Claude's cache writes are reported apart: script them too (the Gemini and OpenAI APIs report none).
CLAUDE_SCRIPT = [
    Tokens(input=1200, cached=300, cache_write=700, output=40),
    Tokens(input=150, cached=1500, cache_write=100, output=12),
]
# Claude Code 2.1.328 prices the requested model at its list price (claude-sonnet-4-5: $3 input, $3.75 cache
# write, $0.30 cache read, $15 output per million tokens).
SONNET = {"input": 3.0, "cache_write": 3.75, "cached": 0.3, "output": 15.0}


def queue(tmp_path: Path, config: str = "limit_margin: 0\n") -> Path:
    root = tmp_path / "queue"
    root.mkdir(mode=0o700)
    (root / "config.yaml").write_text(config)
    return root


def add(root: Path, tmp_path: Path, job_id: str, front: dict, env: dict[str, str], prompt: str) -> None:
    result = aq("add", str(write_job(tmp_path / "jobs", job_id, front, prompt)), root=root, env=env)
    assert result.returncode == 0, result.stderr


def insights(root: Path, job_id: str) -> dict:
    result = aq("insights", job_id, "--json", root=root)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_no_canary(root: Path, *texts: str) -> None:
    """The prompt is nowhere in meta (argv included), aq's own log lines or the runner's output."""
    for path in [*(root / "meta").glob("*"), *(root / "logs").glob("*.aq.log"), *(root / "engines").glob("*")]:
        assert CANARY not in path.read_text(errors="replace"), f"the prompt leaked into {path.name}"
    for text in texts:
        assert CANARY not in text


def estimate(engine: str, model: str, figures: dict) -> float:
    """The cost aq estimates from the plugin's declared price for ``model`` (the longest matching prefix)."""
    from aq_core import plugins

    prices = plugins.get_engine(engine).prices
    prefix = max((p for p in prices if model == p or model.startswith(p + "-")), key=len)
    price = prices[prefix]
    uncached = figures["tokens_in"] - figures["tokens_cached"]
    total = uncached * price.input + figures["tokens_cached"] * price.cached + figures["tokens_out"] * price.output
    return round(total / 1e6, 6)


@pytest.mark.parametrize("engine", ["claude", "codex", "gemini", "qwen"])
def test_the_real_cli_writes_a_file_and_aq_reports_the_servers_usage(
    engine: str, tmp_path: Path, real_cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    exe = real_cli(engine)
    setup = SETUPS[engine]
    repo = git_repo(tmp_path / "repo")
    root = queue(tmp_path)
    home = tmp_path / "engine-home"
    home.mkdir()
    script = CLAUDE_SCRIPT if engine == "claude" else SCRIPT
    with ModelServer(usage=script, canary=CANARY, content=CONTENT) as server:
        env = environment(engine, server, home)
        env[f"AQ_{engine.upper()}_BIN"] = exe
        front = {"engine": engine, "cwd": str(repo), "yolo": True, "model": setup.model, "timeout": "3m"}
        add(root, tmp_path, "hello", front, env, f"Write hello.txt with a greeting. {CANARY}\n")
        run = aq("run", "--once", root=root, env=env, timeout=240)
        log = (root / "logs" / "hello.1.log").read_text(errors="replace")
        assert run.returncode == 0, run.stdout + run.stderr
        assert state_of(root, "hello") == "done", run.stdout + run.stderr + log[-3000:]

        # The CLI really talked to the model: the prompt reached it, and it sent the tool's result back.
        answered = [r.answer.kind for r in server.model_requests()]
        assert answered.count("tool") == 1 and answered.count("final") >= 1, answered
        assert any(r.has_canary for r in server.model_requests())
        expected = server.expected_usage(exclude=setup.background)

    # The file the CLI's own tool wrote is committed on the job's work branch, not on main.
    assert git(repo, "show", "aq/wip/hello:hello.txt") == CONTENT.rstrip("\n")
    assert "hello.txt" not in git(repo, "ls-tree", "-r", "--name-only", "main").split()
    # Nothing else the CLI keeps (its session files, caches) ended up on the branch.
    assert git(repo, "diff", "--name-only", "main", "aq/wip/hello").split() == ["hello.txt"]

    record = insights(root, "hello")
    assert record["result"] == "ok"
    figures = {k: record[k] for k in ("tokens_in", "tokens_cached", "tokens_out")}
    assert figures == expected, log[-3000:]
    assert record["model"] == setup.model
    if engine == "claude":
        uncached = sum(t.input for t in script)
        writes = sum(t.cache_write for t in script)
        reads = sum(t.cached for t in script)
        out = sum(t.tokens_out for t in script)
        cost = (uncached * SONNET["input"] + writes * SONNET["cache_write"] + reads * SONNET["cached"]) / 1e6
        cost += out * SONNET["output"] / 1e6
        records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        printed = [r for r in records if r.get("type") == "result"]
        assert printed[-1]["total_cost_usd"] == pytest.approx(cost, abs=1e-12)  # the CLI's own figure ...
        assert record["cost_usd"] == round(printed[-1]["total_cost_usd"], 6)  # ... is what aq reports
        assert "cost_usd" not in record.get("estimated", [])
        assert record["turns"] == 2 and record["tool_calls"] == 1
    else:
        assert record["cost_usd"] == estimate(engine, setup.model, figures)
        assert "cost_usd" in record["estimated"]
    assert_no_canary(root, run.stdout, run.stderr)
    assert meta(root, "hello")["result"] == "ok"


# What each real CLI prints for each API's limit answer, and how aq classifies it (see the plugins' fixtures).
LIMITS = [
    ("claude", "rate", "rate_limited", None),  # `API Error: Request rejected (429)`: no reset printed
    ("codex", "rate", "rate_limited", None),  # `exceeded retry limit, last status: 429 Too Many Requests`
    ("codex", "usage", "usage_limit", "resets_at"),  # `You've hit your usage limit ... try again at 11:07 AM.`
    ("gemini", "rate", "rate_limited", "retry_after"),  # `... Please retry in 1s. Suggested retry after 1s.`
    ("gemini", "usage", "usage_limit", "resets_in"),  # `You have exhausted your daily quota` (+ the wait)
    ("qwen", "rate", "rate_limited", "retry_after"),  # `[API Error: 429 Rate limit reached ... try again in 1s.`
    ("qwen", "usage", "usage_limit", None),  # `[API Error: 429 The usage limit has been reached]`: no reset printed
]
# Qwen Code 0.24.4 sleeps out a 429's `retry-after` before each of its 7 attempts, however long: a usage window
# announced as hours would hold the run for hours, so its window here is one second (it prints no reset anyway).
SLEEPS_OUT_RETRY_AFTER = {"qwen"}


@pytest.mark.parametrize(("engine", "kind", "cls", "reset"), LIMITS, ids=[f"{e}-{k}" for e, k, _, _ in LIMITS])
def test_a_limit_through_the_real_cli_pauses_only_that_engine_without_spending_a_retry(
    engine: str, kind: str, cls: str, reset: str | None, tmp_path: Path, real_cli
) -> None:
    exe = real_cli(engine)
    setup = SETUPS[engine]
    repo = git_repo(tmp_path / "repo")
    other = tmp_path / "other"
    other.mkdir()
    # A margin that outlasts the run: the paused engine is not tried again while the other job runs.
    root = queue(tmp_path, "limit_margin: 10m\n")
    home = tmp_path / "engine-home"
    home.mkdir()
    resets_in = 1 if engine in SLEEPS_OUT_RETRY_AFTER else 3 * 3600
    with ModelServer(limit=kind, retry_after=1, resets_in=resets_in, canary=CANARY) as server:
        env = environment(engine, server, home, give_up_at_once=True)
        env[f"AQ_{engine.upper()}_BIN"] = exe
        front = {
            "engine": engine,
            "cwd": str(repo),
            "yolo": True,
            "model": setup.model,
            "retry": {"max": 2, "backoff": "1s", "on": ["crash"]},
        }
        add(root, tmp_path, "a-limited", front, env, f"Write hello.txt. {CANARY}\n")
        add(root, tmp_path, "b-same-engine", front, env, f"Write hello.txt. {CANARY}\n")
        command = {"engine": "command", "cwd": str(other), "command": ["git", "--version"]}
        add(root, tmp_path, "c-other-engine", command, env, "Print the version.\n")
        began = time.time()
        # `run --once` would wait out the pause: a long-running runner is stopped once both jobs are settled.
        runner = aq_popen("run", root=root, env=env)
        try:
            wait_until(
                lambda: state_of(root, "c-other-engine") == "done" and "result" in meta(root, "a-limited"),
                240,
                "the limited attempt and the other engine's job",
            )
        finally:
            runner.send_signal(signal.SIGTERM)
            output, _ = runner.communicate(timeout=60)
        ended = time.time()
        assert runner.returncode == 0, output
        limited = len(server.model_requests())
    assert limited >= 1 and all(r.answer.kind == "limit" for r in server.model_requests())

    # The limited job is back in inbox/ with no retry spent; the engine's other job never started; the other
    # engine's job ran.
    first = meta(root, "a-limited")
    assert state_of(root, "a-limited") == "inbox", output
    assert first["attempts"] == "1" and first.get("retries", "0") == "0"
    assert first["result"] == cls, (root / "logs" / "a-limited.1.log").read_text(errors="replace")[-2000:]
    assert state_of(root, "b-same-engine") == "inbox"
    assert not (root / "logs" / "b-same-engine.1.log").exists()
    assert state_of(root, "c-other-engine") == "done"
    assert f"engine {engine} paused until" in output

    finished = float(first["finished"])
    reset_at = float(first["reset_at"]) if first.get("reset_at") else None
    if reset is None:
        assert reset_at is None  # the CLI printed no reset: aq holds the engine (limit_hold)
    else:
        assert reset_at is not None, first
        if reset == "resets_at":  # an absolute time, printed to the minute in the host's zone (TZ=UTC here)
            assert began + 3 * 3600 - 60 < reset_at <= ended + 3 * 3600
        else:
            wait = 1 if reset == "retry_after" else 3 * 3600
            assert reset_at == pytest.approx(finished + wait, abs=5)
        assert float(first["pause_until"]) == pytest.approx(reset_at + 600, abs=1)
    runs = insights(root, "a-limited")["runs"]
    assert [r["result"] for r in runs] == [cls]
    assert_no_canary(root, output)


def test_gemini_without_a_model_routes_first_and_every_call_counts(tmp_path: Path, real_cli) -> None:
    """Without ``-m`` Gemini CLI asks a small model which model to use (a JSON answer), then runs the session
    on the chosen one; its stats, and so aq's figures, hold both models' calls."""
    exe = real_cli("gemini")
    repo = git_repo(tmp_path / "repo")
    root = queue(tmp_path)
    home = tmp_path / "engine-home"
    home.mkdir()
    with ModelServer(usage=SCRIPT, canary=CANARY, content=CONTENT) as server:
        env = environment("gemini", server, home)
        env["AQ_GEMINI_BIN"] = exe
        add(
            root,
            tmp_path,
            "routed",
            {"engine": "gemini", "cwd": str(repo), "yolo": True},
            env,
            f"Write hello.txt. {CANARY}\n",
        )
        run = aq("run", "--once", root=root, env=env, timeout=240)
        assert run.returncode == 0 and state_of(root, "routed") == "done", run.stdout + run.stderr
        calls = server.model_requests()
        expected = server.expected_usage()
    router = [r for r in calls if r.path.endswith(":generateContent")]
    session = [r for r in calls if ":streamGenerateContent" in r.path]
    assert router and all(r.answer.kind == "side" for r in router)
    assert [r.answer.kind for r in session] == ["tool", "final"]
    record = insights(root, "routed")
    assert {k: record[k] for k in ("tokens_in", "tokens_cached", "tokens_out")} == expected
    assert record["model"] == re.search(r"/models/([^:]+):", session[0].path).group(1)
    assert git(repo, "show", "aq/wip/routed:hello.txt") == CONTENT.rstrip("\n")

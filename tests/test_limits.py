"""Engine limits end to end with fake engine executables printing the engines' real limit messages."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import pytest
from fakes import Fakes, claude_limit, claude_ok, codex_limit, codex_ok
from helpers import aq, aq_popen, git, git_repo, meta, pid_alive, state_of, stub, wait_until, write_job


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "queue"
    path.mkdir(mode=0o700)
    (path / "config.yaml").write_text("limit_margin: 0\n")
    return path


@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Fakes:
    f = Fakes(tmp_path)
    return f


def add(root: Path, tmp_path: Path, job_id: str, front: dict, env: dict, prompt: str = "Do the task.\n") -> None:
    result = aq("add", str(write_job(tmp_path / "jobs", job_id, front, prompt)), root=root, env=env)
    assert result.returncode == 0, result.stderr


def test_usage_limit_pauses_that_engine_only_and_the_job_resumes_its_session_and_checkpoint(
    root: Path, tmp_path: Path, fakes: Fakes
) -> None:
    repo = git_repo(tmp_path / "repo")
    other = tmp_path / "other"
    other.mkdir()
    fakes.engine(
        "claude",
        [
            {"lines": claude_limit(reset_in=4), "files": {"part1.txt": "first half"}, "exit": 1},
            {"lines": claude_ok(), "files": {"part2.txt": "second half"}},
        ],
        session="c1d2e3f4-0003-4000-8000-000000000003",
    )
    fakes.engine("codex", [{"lines": codex_ok()}])
    add(root, tmp_path, "big", {"engine": "claude", "cwd": str(repo)}, fakes.env)
    add(root, tmp_path, "small1", {"engine": "codex", "cwd": str(other)}, fakes.env)
    add(root, tmp_path, "small2", {"engine": "codex", "cwd": str(other)}, fakes.env)
    add(root, tmp_path, "later", {"engine": "claude", "cwd": str(other)}, fakes.env)
    run = aq("run", "--once", root=root, env=fakes.env, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "engine claude paused until" in run.stdout

    big = meta(root, "big")
    assert state_of(root, "big") == "done"
    assert big["attempts"] == "2" and big.get("retries", "0") == "0", "a limit spends no retry (the job has none)"
    until = float(big["pause_until"])
    claude_calls, codex_calls = fakes.calls("claude"), fakes.calls("codex")
    first, second = claude_calls[0], claude_calls[1]
    assert second["t"] >= until - 0.5, "the engine was not used again before its reset"
    assert all(c["t"] < until for c in codex_calls), "other engines went on during the pause"
    later = next(c for c in claude_calls if c["attempt"] == "1" and c is not first)
    assert later["t"] >= until - 0.5, "no new job of the paused engine started"
    # The second attempt continued the engine's own session, from the checkpoint.
    assert "--resume" in second["argv"] and "c1d2e3f4-0003-4000-8000-000000000003" in second["argv"]
    assert "part1.txt" in second["saw"]
    files = git(repo, "ls-tree", "-r", "--name-only", "aq/wip/big").split()
    assert {"part1.txt", "part2.txt"} <= set(files)
    runs = json.loads(aq("insights", "big", "--json", root=root).stdout)["runs"]
    assert [r["result"] for r in runs] == ["usage_limit", "ok"]


def test_a_restarted_runner_keeps_the_pause(root: Path, tmp_path: Path, fakes: Fakes) -> None:
    work = tmp_path / "w"
    work.mkdir()
    fakes.engine("codex", [{"lines": codex_limit(reset_in=6), "exit": 1}, {"lines": codex_ok()}])
    add(root, tmp_path, "paused", {"engine": "codex", "cwd": str(work)}, fakes.env)
    runner = aq_popen("run", root=root, env=fakes.env)
    wait_until(lambda: state_of(root, "paused") == "inbox" and "pause_until" in meta(root, "paused"), 30, "the limit")
    runner.send_signal(signal.SIGTERM)
    runner.communicate(timeout=30)
    until = float(meta(root, "paused")["pause_until"])
    status = json.loads(aq("status", "--json", root=root).stdout)
    (engine,) = [e for e in status["engines"] if e["engine"] == "codex"]
    assert engine["paused_until"] == pytest.approx(until) and engine["pause_reason"] == "usage_limit"
    assert "codex: paused until" in aq("status", root=root).stdout
    assert aq("run", "--once", root=root, env=fakes.env, timeout=60).returncode == 0
    calls = fakes.calls("codex")
    assert len(calls) == 2 and calls[1]["t"] >= until - 0.5
    assert state_of(root, "paused") == "done"


def test_fallback_runs_on_the_next_engine(root: Path, tmp_path: Path, fakes: Fakes) -> None:
    work = tmp_path / "w"
    work.mkdir()
    fakes.engine("codex", [{"lines": codex_ok()}])
    env = dict(fakes.env, AQ_CLAUDE_BIN=str(tmp_path / "no-such-claude"))
    add(root, tmp_path, "either", {"engine": ["claude", "codex"], "cwd": str(work)}, env)
    assert aq("run", "--once", root=root, env=env).returncode == 0
    m = meta(root, "either")
    assert state_of(root, "either") == "done" and m["engine"] == "codex"
    record = json.loads(aq("insights", "either", "--json", root=root).stdout)
    assert record["engines"] == ["codex"] and record["runs"][0]["engine"] == "codex"
    assert record["tokens_in"] == 2000


def test_a_paused_engine_falls_back_and_on_limit_fail_fails(root: Path, tmp_path: Path, fakes: Fakes) -> None:
    work = tmp_path / "w"
    work.mkdir()
    fakes.engine("claude", [{"lines": claude_limit(reset_in=3600), "exit": 1}])
    fakes.engine("codex", [{"lines": codex_ok()}])
    add(root, tmp_path, "strict", {"engine": "claude", "cwd": str(work), "on_limit": "fail"}, fakes.env)
    add(root, tmp_path, "flexible", {"engine": ["claude", "codex"], "cwd": str(work)}, fakes.env)
    assert aq("run", "--once", root=root, env=fakes.env).returncode == 0
    assert state_of(root, "strict") == "failed" and meta(root, "strict")["result"] == "usage_limit"
    assert state_of(root, "flexible") == "done" and meta(root, "flexible")["engine"] == "codex"
    assert len(fakes.calls("claude")) == 1, "the paused engine got no second job"
    resumed = aq("resume", "claude", root=root)
    assert resumed.returncode == 0, resumed.stderr
    assert "claude: paused" not in aq("status", root=root).stdout
    again = aq("resume", "claude", root=root)
    assert again.returncode == 1 and "not paused" in again.stderr


def test_daily_budget_stops_new_jobs_and_status_says_so(root: Path, tmp_path: Path, fakes: Fakes) -> None:
    work = tmp_path / "w"
    work.mkdir()
    (root / "config.yaml").write_text("limit_margin: 0\nbudgets:\n  claude: 0.05\n")
    fakes.engine("claude", [{"lines": claude_ok(cost=0.04)}])
    for i in range(3):
        add(root, tmp_path, f"b{i}", {"engine": "claude", "cwd": str(work)}, fakes.env)
    run = aq("run", "--once", root=root, env=fakes.env)
    assert run.returncode == 0
    assert [state_of(root, f"b{i}") for i in range(3)] == ["done", "done", "inbox"]
    assert "budget" in run.stdout
    status = aq("status", root=root).stdout
    assert "claude: budget reached" in status
    engines = json.loads(aq("status", "--json", root=root).stdout)["engines"]
    (claude,) = [e for e in engines if e["engine"] == "claude"]
    assert claude["spent_today_usd"] == pytest.approx(0.08) and claude["budget_reached"]


def test_max_cost_usd_is_passed_and_enforced(root: Path, tmp_path: Path, fakes: Fakes) -> None:
    work = tmp_path / "w"
    work.mkdir()
    failing = claude_ok(cost=0.04)
    fakes.engine("claude", [{"lines": failing, "exit": 1}])
    front = {
        "engine": "claude",
        "cwd": str(work),
        "max_cost_usd": 0.05,
        "retry": {"max": 5, "backoff": "0s", "on": ["crash"]},
    }
    add(root, tmp_path, "capped", front, fakes.env)
    assert aq("run", "--once", root=root, env=fakes.env).returncode == 0
    calls = fakes.calls("claude")
    assert len(calls) == 2, "the job stops once its spend reaches max_cost_usd"
    budgets = [c["argv"][c["argv"].index("--max-budget-usd") + 1] for c in calls]
    assert [float(b) for b in budgets] == [0.05, pytest.approx(0.01)]
    m = meta(root, "capped")
    assert (state_of(root, "capped"), m["result"]) == ("failed", "budget_exceeded")


def test_notifier_gets_one_record_per_finished_job_and_never_the_prompt(root: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    out = tmp_path / "notes.jsonl"
    hook = f"{sys.executable} -c \"import sys; open('{out}', 'a').write(sys.stdin.read() + chr(10))\""
    (root / "config.yaml").write_text(f"notify: {json.dumps(hook)}\n")
    canary = "PROMPT-CANARY-9a8b7c"
    for i in range(3):
        add(
            root,
            tmp_path,
            f"n{i}",
            {"engine": "command", "cwd": str(work), "command": stub("--exit", str(i % 2))},
            {},
            prompt=f"{canary}\n",
        )
    assert aq("run", "--once", root=root).returncode == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["id"] for r in records) == ["n0", "n1", "n2"]
    assert all(r["event"] == "job_finished" for r in records)
    assert {r["id"]: r["result"] for r in records} == {"n0": "ok", "n1": "crash", "n2": "ok"}
    assert canary not in out.read_text()
    assert "runs" in records[0] and records[0]["attempts"] == 1


def test_a_hanging_notifier_is_killed_and_jobs_go_on(root: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    pidfile = tmp_path / "notifier.pids"
    (root / "config.yaml").write_text(f"notify: 'echo $$ >> {pidfile}; exec sleep 60'\nnotify_timeout: 1s\n")
    for i in range(2):
        add(root, tmp_path, f"h{i}", {"engine": "command", "cwd": str(work), "command": stub()}, {})
    started = time.monotonic()
    run = aq("run", "--once", root=root, timeout=60)
    assert run.returncode == 0
    assert time.monotonic() - started < 30
    assert [state_of(root, f"h{i}") for i in range(2)] == ["done", "done"]
    assert "notifier timed out after 1s and was killed" in run.stdout
    pids = [int(p) for p in pidfile.read_text().split()]
    assert len(pids) == 2
    for pid in pids:
        wait_until(lambda pid=pid: not pid_alive(pid), 10, "the notifier to be killed")


def test_engine_pause_and_resume_notify(root: Path, tmp_path: Path, fakes: Fakes) -> None:
    work = tmp_path / "w"
    work.mkdir()
    out = tmp_path / "events.jsonl"
    hook = f"{sys.executable} -c \"import sys; open('{out}', 'a').write(sys.stdin.read() + chr(10))\""
    (root / "config.yaml").write_text(f"limit_margin: 0\nnotify: {json.dumps(hook)}\n")
    fakes.engine("codex", [{"lines": codex_limit(reset_in=2), "exit": 1}, {"lines": codex_ok()}])
    add(root, tmp_path, "evented", {"engine": "codex", "cwd": str(work)}, fakes.env)
    assert aq("run", "--once", root=root, env=fakes.env, timeout=60).returncode == 0
    events = [json.loads(line)["event"] for line in out.read_text().splitlines()]
    assert events == ["engine_paused", "engine_resumed", "job_finished"]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("budgets:\n  claude: lots\n", "budgets.claude"),
        ("notfy: echo\n", "did you mean 'notify'"),
        ("on_limit: maybe\n", "on_limit"),
        ("limit_hold: soon\n", "limit_hold"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(root: Path, text: str, needle: str) -> None:
    (root / "config.yaml").write_text(text)
    result = aq("run", "--once", root=root)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and needle in result.stderr and "Traceback" not in result.stderr


def test_a_session_the_engine_lost_is_not_resumed_again(root: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    fakes = Fakes(tmp_path)
    fakes.engine(
        "claude",
        [
            {"lines": claude_ok(cost=0.01), "exit": 1},
            {"stderr": ["No conversation found with session ID: {session}"], "exit": 1},
            {"lines": claude_ok(cost=0.01)},
        ],
        session="0b5c3e1a-1111-4222-8333-944455556666",
    )
    front = {"engine": "claude", "cwd": str(work), "retry": {"max": 3, "backoff": "0s", "on": ["crash"]}}
    add(root, tmp_path, "lost", front, fakes.env)
    assert aq("run", "--once", root=root, env=fakes.env).returncode == 0
    argvs = [c["argv"] for c in fakes.calls("claude")]
    assert len(argvs) == 3
    assert "--resume" not in argvs[0] and "--resume" in argvs[1]
    assert "--resume" not in argvs[2], "after the engine lost the session, the next attempt starts a new one"
    assert state_of(root, "lost") == "done"


def test_after_a_pause_one_probe_job_runs_before_the_rest(root: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    fakes = Fakes(tmp_path)
    fakes.engine("codex", [{"lines": codex_limit(reset_in=2), "exit": 1}, {"lines": codex_ok(), "sleep": 0.7}])
    add(root, tmp_path, "p0", {"engine": "codex", "cwd": str(work)}, fakes.env)
    runner = aq_popen("run", "--workers", "3", root=root, env=fakes.env)
    try:
        wait_until(lambda: "pause_until" in meta(root, "p0"), 30, "the limit")
        for i in (1, 2):
            add(root, tmp_path, f"p{i}", {"engine": "codex", "cwd": str(work)}, fakes.env)
        wait_until(lambda: all(state_of(root, f"p{i}") == "done" for i in range(3)), 60, "every job done")
    finally:
        runner.send_signal(signal.SIGTERM)
        runner.communicate(timeout=30)
    limit_at, probe, *rest = sorted(c["t"] for c in fakes.calls("codex"))
    assert len(rest) == 2
    assert probe >= limit_at + 1.5, "nothing ran during the pause"
    assert all(t >= probe + 0.6 for t in rest), "the other jobs waited for the probe to end without a limit"

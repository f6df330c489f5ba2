"""``stall_timeout:``: an attempt whose log stops growing is ended like a timeout, as ``stalled``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fakes import claude_limit
from helpers import aq, meta, meta_pairs, pid_alive, state_of, wait_until, write_job

from aq_core.errors import JobInvalid
from aq_core.job import parse_job


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "queue"


def add(root: Path, tmp_path: Path, job_id: str, front: dict) -> None:
    result = aq("add", str(write_job(tmp_path / "jobs", job_id, front)), root=root)
    assert result.returncode == 0, result.stderr


def test_an_agent_that_keeps_printing_is_never_stalled(root: Path, tmp_path: Path) -> None:
    # 20 lines 0.2s apart: it runs twice as long as the stall timeout and still ends ok.
    printer = "i=0; while [ $i -lt 20 ]; do echo tick $i; sleep 0.2; i=$((i+1)); done"
    add(
        root, tmp_path, "chatty", {"engine": "command", "cwd": str(tmp_path), "stall_timeout": "2s", "command": printer}
    )
    assert aq("run", "--once", root=root).returncode == 0
    m = meta(root, "chatty")
    assert (state_of(root, "chatty"), m["result"]) == ("done", "ok")
    assert float(m["duration_s"]) > 2.0
    assert "tick 19" in (root / "logs" / "chatty.1.log").read_text()


def test_an_agent_that_goes_quiet_is_stalled_and_its_group_ended(root: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    quiet = f"echo working; sleep 30 & echo $! > {pidfile}; sleep 30"
    add(
        root,
        tmp_path,
        "quiet",
        {"engine": "command", "cwd": str(tmp_path), "stall_timeout": 0.5, "grace": "1s", "command": quiet},
    )
    run = aq("run", "--once", root=root, timeout=60)
    assert run.returncode == 0
    m = meta(root, "quiet")
    assert (state_of(root, "quiet"), m["result"], m["attempts"]) == ("failed", "stalled", "1")
    assert "stalled: no output for 0.5s" in run.stdout + run.stderr
    assert "stalled: no output for 0.5s" in (root / "logs" / "quiet.aq.log").read_text()
    wait_until(lambda: not pid_alive(int(pidfile.read_text())), 10, "the agent's child to be gone")


def test_retry_on_stalled_retries_it(root: Path, tmp_path: Path) -> None:
    front = {
        "engine": "command",
        "cwd": str(tmp_path),
        "stall_timeout": "0.5s",
        "grace": 1,
        "retry": {"max": 1, "on": ["stalled"]},
        "command": "echo once; sleep 30",
    }
    add(root, tmp_path, "retried", front)
    assert aq("run", "--once", root=root, timeout=60).returncode == 0
    m = meta(root, "retried")
    assert (m["attempts"], m["result"], m["last_failure"]) == ("2", "retries_exhausted", "stalled")
    assert [v for k, v in meta_pairs(root, "retried") if k == "result"] == ["stalled", "retries_exhausted"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stall_timeout: 0", "stall_timeout: 0: must be more than zero"),
        ("stall_timeout: soon", "stall_timeout: 'soon': expected a duration"),
        ("retry: {on: [staled]}", "unknown failure class 'staled' (did you mean 'stalled'?)"),
        ("sandbox: yes", "sandbox: 'yes': expected true or false"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    data = f"---\nengine: command\ncommand: 'true'\ncwd: {tmp_path}\n{text}\n---\nDo it.\n".encode()
    with pytest.raises(JobInvalid) as info:
        parse_job(tmp_path / "j.md", data)
    assert message in str(info.value)


def test_keys_parse(tmp_path: Path) -> None:
    data = f"---\nengine: command\ncommand: 'true'\ncwd: {tmp_path}\nstall_timeout: 1m30s\nsandbox: true\nretry: {{on: [stalled]}}\n---\nDo it.\n"
    job = parse_job(tmp_path / "j.md", data.encode())
    assert (job.stall_timeout, job.sandbox, job.retry.on) == (90.0, True, ("stalled",))
    assert parse_job(tmp_path / "k.md", data.replace("sandbox: true\n", "").encode()).sandbox is None


def test_an_engine_that_names_why_it_went_quiet_keeps_its_class(root: Path, tmp_path: Path) -> None:
    # Claude printed that its usage limit was hit, then hung: the stall is that limit, not a failure.
    reset = int(time.time()) + 3600
    lines = tmp_path / "limit.jsonl"
    lines.write_text(
        "\n".join(x.replace("{session}", "s-1").replace("{reset+3600}", str(reset)) for x in claude_limit(3600))
    )
    fake = tmp_path / "claude"
    fake.write_text(f"#!/bin/sh\ncat >/dev/null\ncat {lines}\necho\nexec sleep 30\n")
    fake.chmod(0o755)
    add(
        root,
        tmp_path,
        "limited",
        {"engine": "claude", "cwd": str(tmp_path), "stall_timeout": 0.5, "grace": 1, "on_limit": "fail"},
    )
    assert aq("run", "--once", root=root, env={"AQ_CLAUDE_BIN": str(fake)}, timeout=60).returncode == 0
    m = meta(root, "limited")
    assert (state_of(root, "limited"), m["result"]) == ("failed", "usage_limit")

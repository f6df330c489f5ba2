"""Resilience end to end: orphans after kill -9, PID reuse, idempotent recovery, WIP checkpoints, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import aq, aq_popen, git, git_repo, meta, meta_pairs, pid_alive, state_of, stub, wait_until, write_job

from aq_core.store_fs import FsStore


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "queue"


def add(root: Path, jobs: Path, job_id: str, front: dict, prompt: str = "Do the task.\n") -> None:
    result = aq("add", str(write_job(jobs, job_id, front, prompt)), root=root)
    assert result.returncode == 0, result.stderr


def refs(repo: Path) -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)")
    return dict(line.split() for line in out.splitlines())


def start_and_kill_runner(root: Path, marker: Path) -> int:
    """Start a runner, wait until its agent runs and the runner recorded it, kill -9 the runner; return
    the agent's pid. (The agent may touch ``marker`` before its runner writes its pid to meta: killed
    in between, the attempt is recovery's to find, see test_an_agent_started_but_not_recorded...)"""
    runner = aq_popen("run", root=root)
    wait_until(marker.exists, 30, "the agent to start")
    agent = wait_until(lambda: _building(root) and meta(root, _building(root)[0]).get("agent_pid"), 30, "agent pid")
    runner.kill()
    runner.wait(timeout=10)
    return int(agent)


def _building(root: Path) -> list[str]:
    return [p.stem for p in (root / "building").glob("*.md")]


def test_orphan_of_a_dead_runner_is_recovered_once_with_its_work_checkpointed(root: Path, tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo")
    main_before = git(repo, "rev-parse", "main")
    marker = tmp_path / "started"
    command = ["/bin/sh", "-c", f"echo work > agent-file.txt; touch {marker}; exec sleep 300"]
    add(root, tmp_path / "jobs", "orphan", {"engine": "command", "cwd": str(repo), "command": command})
    agent = start_and_kill_runner(root, marker)
    assert pid_alive(agent), "the agent outlives a kill -9 of its runner (its own session)"
    assert state_of(root, "orphan") == "building"

    first = aq("recover", root=root)
    assert first.returncode == 0, first.stderr
    assert "recovered 1 orphan" in first.stdout
    assert "recovered orphan" in first.stdout and "orphan" in first.stdout
    wait_until(lambda: not pid_alive(agent), 10, "the leftover agent to be killed")
    assert state_of(root, "orphan") == "inbox"
    m = meta(root, "orphan")
    assert (m["attempts"], m["result"], m["orphans"]) == ("1", "orphaned", "1")
    assert "next_eligible" not in m or float(m["next_eligible"]) <= time.time()
    assert git(repo, "show", "aq/wip/orphan:agent-file.txt") == "work"
    assert git(repo, "rev-parse", "main") == main_before

    second = aq("recover", root=root)
    assert "recovered 0 orphan" in second.stdout
    assert sum(1 for k, _ in meta_pairs(root, "orphan") if k == "recovered") == 1
    assert "recovered orphan" in (root / "logs" / "orphan.aq.log").read_text()


def test_two_recoveries_at_once_recover_once(root: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    marker = tmp_path / "started"
    add(
        root,
        tmp_path / "jobs",
        "racy",
        {"engine": "command", "cwd": str(work), "command": ["/bin/sh", "-c", f"touch {marker}; exec sleep 300"]},
    )
    start_and_kill_runner(root, marker)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "aq_core", "--root", str(root), "recover"], stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert sum(int(o.strip().splitlines()[-1].split()[1]) for o in outs) == 1, outs
    assert state_of(root, "racy") == "inbox"
    assert sum(1 for k, _ in meta_pairs(root, "racy") if k == "recovered") == 1


def _claim_by_hand(root: Path, job_id: str, pid: int, pidstart: float, attempted: bool = True) -> None:
    store = FsStore(root)
    assert store.claim(job_id)
    store.append_meta(
        job_id,
        {
            "claimed": time.time(),
            "pid": pid,
            "pidstart": pidstart,
            "host": os.environ.get("AQ_HOST_ID") or os.uname().nodename,
        },
    )
    if attempted:
        store.append_meta(job_id, {"attempt": 1, "attempts": 1, "started": time.time()})


def test_pid_reuse_is_an_orphan(root: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    add(root, tmp_path / "jobs", "reused", {"engine": "command", "cwd": str(work), "command": stub()})
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        _claim_by_hand(root, "reused", stranger.pid, pidstart=12345.0)  # alive, but not the runner that claimed it
        out = aq("recover", root=root)
        assert "recovered 1 orphan" in out.stdout
        assert state_of(root, "reused") == "inbox"
        assert stranger.poll() is None, "a stranger's process is never touched"
    finally:
        stranger.kill()
        stranger.wait()


def test_a_live_runners_job_is_never_taken(root: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    marker = tmp_path / "started"
    add(
        root,
        tmp_path / "jobs",
        "mine",
        {"engine": "command", "cwd": str(work), "command": ["/bin/sh", "-c", f"touch {marker}; exec sleep 300"]},
    )
    runner = aq_popen("run", root=root)
    try:
        wait_until(marker.exists, 30, "the agent to start")
        out = aq("recover", root=root)
        assert "recovered 0 orphan" in out.stdout
        assert state_of(root, "mine") == "building"
        second = aq_popen("run", "--once", root=root)
        second.communicate(timeout=30)
        assert state_of(root, "mine") == "building", "another runner's loop must not steal it either"
    finally:
        runner.send_signal(signal.SIGTERM)
        runner.communicate(timeout=30)


@pytest.mark.parametrize("planted", [False, True])
def test_a_runner_that_died_before_starting_the_engine_made_no_attempt(
    root: Path, tmp_path: Path, planted: bool
) -> None:
    work = tmp_path / "w"
    work.mkdir()
    add(root, tmp_path / "jobs", "unstarted", {"engine": "command", "cwd": str(work), "command": stub()})
    dead = subprocess.Popen(["true"])
    dead.wait()
    _claim_by_hand(root, "unstarted", dead.pid, pidstart=time.time() - 5, attempted=False)
    if planted:  # a symlink where the attempt's log goes is no evidence: the agent's process never opens one
        os.symlink(tmp_path / "elsewhere", root / "logs" / "unstarted.1.log")
    assert "recovered 1 orphan" in aq("recover", root=root).stdout
    m = meta(root, "unstarted")
    assert state_of(root, "unstarted") == "inbox"
    assert m.get("attempts", "0") == "0"
    if planted:
        (root / "logs" / "unstarted.1.log").unlink()  # else its agent never starts (test_hardening)
    assert aq("run", "--once", root=root).returncode == 0
    assert meta(root, "unstarted")["attempts"] == "1"


def test_three_orphans_in_a_row_fail_as_retries_exhausted(root: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    add(root, tmp_path / "jobs", "killer", {"engine": "command", "cwd": str(work), "command": stub()})
    store = FsStore(root)
    for round_ in range(3):
        dead = subprocess.Popen(["true"])
        dead.wait()
        _claim_by_hand(root, "killer", dead.pid, pidstart=time.time() - 5)
        store.append_meta("killer", {"attempt": round_ + 1, "attempts": round_ + 1})
        aq("recover", root=root)
    assert state_of(root, "killer") == "failed"
    m = meta(root, "killer")
    assert (m["result"], m["last_failure"], m["orphans"]) == ("retries_exhausted", "orphaned", "3")


def test_a_decided_but_unmoved_job_is_finished_by_recovery(root: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    add(root, tmp_path / "jobs", "almost", {"engine": "command", "cwd": str(work), "command": stub()})
    dead = subprocess.Popen(["true"])
    dead.wait()
    _claim_by_hand(root, "almost", dead.pid, pidstart=time.time() - 5)
    FsStore(root).append_meta("almost", {"exit": 0, "result": "ok", "decision": "done"})
    aq("recover", root=root)
    assert state_of(root, "almost") == "done"
    assert meta(root, "almost")["attempts"] == "1"


def test_wip_branch_holds_the_agents_work_and_main_is_untouched(root: Path, tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"README.md": "hello\n", ".gitignore": "ignored.log\n"})
    before = refs(repo)
    front = {
        "engine": "command",
        "cwd": str(repo),
        "command": stub(
            "--write", "new.txt=made by the agent", "--write", "README.md=changed", "--write", "ignored.log=noise"
        ),
    }
    add(root, tmp_path / "jobs", "wip", front)
    assert aq("run", "--once", root=root).returncode == 0
    m = meta(root, "wip")
    assert m["wip_branch"] == "aq/wip/wip"
    assert git(repo, "rev-parse", "aq/wip/wip") == m["wip_commit"]
    assert git(repo, "log", "-1", "--format=%s", "aq/wip/wip") == "aq wip: wip (ok)"
    assert git(repo, "show", "aq/wip/wip:new.txt") == "made by the agent"
    assert git(repo, "show", "aq/wip/wip:README.md") == "changed"
    assert "ignored.log" not in git(repo, "ls-tree", "-r", "--name-only", "aq/wip/wip")
    after = refs(repo)
    for ref, sha in before.items():
        assert after[ref] == sha, f"{ref} moved"
    assert git(repo, "rev-list", "--count", "main") == "1"
    assert (m["files_changed"], m["lines_added"], m["lines_deleted"]) == ("2", "2", "1")


def test_non_git_cwd_is_skipped_cleanly(root: Path, tmp_path: Path) -> None:
    work = tmp_path / "plain"
    work.mkdir()
    add(
        root, tmp_path / "jobs", "nogit", {"engine": "command", "cwd": str(work), "command": stub("--write", "x.txt=1")}
    )
    run = aq("run", "--once", root=root)
    assert "wip: cwd not a git repo" in run.stdout
    assert "wip: cwd not a git repo" in (root / "logs" / "nogit.aq.log").read_text()
    assert state_of(root, "nogit") == "done"
    assert "wip_branch" not in meta(root, "nogit")


def test_a_retried_job_resumes_from_its_checkpoint(root: Path, tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo")
    seen = tmp_path / "seen.json"
    script = tmp_path / "agent.py"
    script.write_text(
        "import json, os, subprocess, sys\n"
        "sys.stdin.read()\n"
        "attempt = int(os.environ['AQ_ATTEMPT'])\n"
        "head = subprocess.run(['git', 'symbolic-ref', '--short', 'HEAD'], capture_output=True, text=True).stdout.strip()\n"
        f"with open({str(seen)!r}, 'a') as fh: fh.write(json.dumps({{'attempt': attempt, 'head': head, 'has_step1': os.path.exists('step1.txt')}}) + '\\n')\n"
        "open(f'step{attempt}.txt', 'w').write('done\\n')\n"
        "sys.exit(1 if attempt == 1 else 0)\n"
    )
    front = {
        "engine": "command",
        "cwd": str(repo),
        "command": [sys.executable, str(script)],
        "retry": {"max": 1, "backoff": "0s", "on": ["crash"]},
    }
    add(root, tmp_path / "jobs", "resume", front)
    assert aq("run", "--once", root=root).returncode == 0
    first, second = (json.loads(line) for line in seen.read_text().splitlines())
    assert first == {"attempt": 1, "head": "aq/wip/resume", "has_step1": False}
    assert second == {"attempt": 2, "head": "aq/wip/resume", "has_step1": True}
    assert state_of(root, "resume") == "done"
    files = git(repo, "ls-tree", "-r", "--name-only", "aq/wip/resume").split()
    assert {"step1.txt", "step2.txt"} <= set(files)
    assert git(repo, "log", "--format=%s", "aq/wip/resume").splitlines()[:2] == [
        "aq wip: resume (ok)",
        "aq wip: resume (crash)",
    ]


def test_verify_failure_with_one_retry_is_exhausted_after_two_attempts(root: Path, tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo")
    front = {
        "engine": "command",
        "cwd": str(repo),
        "command": stub("--append", "log.txt=tried"),
        "verify": "false",
        "retry": {"max": 1, "backoff": "0s", "on": ["verify_failed"]},
    }
    add(root, tmp_path / "jobs", "vf", front)
    assert aq("run", "--once", root=root).returncode == 0
    m = meta(root, "vf")
    assert (m["attempts"], m["result"], m["last_failure"]) == ("2", "retries_exhausted", "verify_failed")
    assert git(repo, "log", "-1", "--format=%s", "aq/wip/vf") == "aq wip: vf (verify_failed)"


def test_crash_is_retried_only_when_in_on(root: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    jobs = tmp_path / "jobs"
    add(
        root,
        jobs,
        "with",
        {
            "engine": "command",
            "cwd": str(work),
            "command": stub("--exit", "2"),
            "retry": {"max": 2, "backoff": "0s", "on": ["crash"]},
        },
    )
    add(
        root,
        jobs,
        "without",
        {
            "engine": "command",
            "cwd": str(work),
            "command": stub("--exit", "2"),
            "retry": {"max": 2, "backoff": "0s", "on": ["timeout"]},
        },
    )
    assert aq("run", "--once", root=root).returncode == 0
    assert (meta(root, "with")["attempts"], meta(root, "with")["result"]) == ("3", "retries_exhausted")
    assert (meta(root, "without")["attempts"], meta(root, "without")["result"]) == ("1", "crash")


def test_sigterm_mid_job_checkpoints_and_requeues(root: Path, tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo")
    marker = tmp_path / "started"
    command = ["/bin/sh", "-c", f"echo partial > half.txt; touch {marker}; exec sleep 300"]
    add(
        root,
        tmp_path / "jobs",
        "midway",
        {"engine": "command", "cwd": str(repo), "command": command, "retry": {"max": 1, "on": ["crash"]}},
    )
    runner = aq_popen("run", root=root)
    wait_until(marker.exists, 30, "the agent to start")
    started = time.monotonic()
    runner.send_signal(signal.SIGTERM)
    runner.communicate(timeout=30)
    assert time.monotonic() - started < 10, "the runner exits within seconds"
    assert state_of(root, "midway") == "inbox"
    m = meta(root, "midway")
    assert (m["result"], m["attempts"]) == ("stopped", "1")
    assert m.get("retries", "0") == "0", "a stop uses no retry"
    assert git(repo, "show", "aq/wip/midway:half.txt") == "partial"
    assert git(repo, "log", "-1", "--format=%s", "aq/wip/midway") == "aq wip: midway (stopped)"


def test_several_runners_never_overlap_jobs_sharing_a_lock(root: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    record = tmp_path / "rec"
    paths = [
        write_job(
            tmp_path / "jobs",
            f"l{i}",
            {
                "engine": "command",
                "cwd": str(work),
                "lock": "shared",
                "command": stub("--record", str(record), "--sleep", "0.3"),
            },
        )
        for i in range(6)
    ]
    assert aq("add", *map(str, paths), root=root).returncode == 0
    runners = [aq_popen("run", "--once", "--workers", "2", root=root) for _ in range(3)]
    for r in runners:
        r.communicate(timeout=120)
    spans: dict[str, list[float]] = {}
    for line in record.read_text().splitlines():
        kind, job, _a, t, _p = line.split()
        spans.setdefault(job, [0.0, 0.0])[0 if kind == "start" else 1] = float(t)
    assert len(spans) == 6
    items = sorted(spans.values())
    for a, b in zip(items, items[1:], strict=False):
        assert a[1] <= b[0], "two jobs sharing a lock overlapped"
    assert all(state_of(root, f"l{i}") == "done" for i in range(6))


def test_an_agent_started_but_not_recorded_is_found_counted_and_ended(root: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    add(root, tmp_path / "jobs", "unrecorded", {"engine": "command", "cwd": str(work), "command": stub()})
    dead = subprocess.Popen(["true"])
    dead.wait()
    _claim_by_hand(root, "unrecorded", dead.pid, pidstart=time.time() - 5, attempted=False)
    env = dict(os.environ, AQ_JOB_ID="unrecorded", AQ_ATTEMPT="1", AQ_ROOT=str(FsStore(root).root))
    agent = subprocess.Popen(["sleep", "300"], env=env, start_new_session=True)
    try:
        assert "recovered 1 orphan" in aq("recover", root=root).stdout
        agent.wait(timeout=10)
        m = meta(root, "unrecorded")
        assert (m["attempts"], m["result"]) == ("1", "orphaned")
        assert state_of(root, "unrecorded") == "inbox"
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()


def test_worktree_isolation_leaves_the_users_checkout_untouched(root: Path, tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo")
    (repo / "README.md").write_text("the user's own edit\n")
    before_head = git(repo, "symbolic-ref", "HEAD")
    before_status = git(repo, "status", "--porcelain")
    jobs = tmp_path / "jobs"
    record = tmp_path / "rec"
    for i in range(2):
        front = {
            "engine": "command",
            "cwd": str(repo),
            "isolation": "worktree",
            "command": stub("--record", str(record), "--write", f"w{i}.txt=isolated", "--sleep", "0.5"),
        }
        add(root, jobs, f"iso{i}", front)
    assert aq("run", "--once", "--workers", "2", root=root).returncode == 0
    assert git(repo, "symbolic-ref", "HEAD") == before_head
    assert git(repo, "status", "--porcelain") == before_status
    assert (repo / "README.md").read_text() == "the user's own edit\n"
    assert not (repo / "w0.txt").exists()
    for i in range(2):
        assert git(repo, "show", f"aq/wip/iso{i}:w{i}.txt") == "isolated"
        m = meta(root, f"iso{i}")
        assert m["workdir"] != str(repo)
        assert m["worktree_removed"] == "1" and not Path(m["workdir"]).exists(), "a done job's worktree is removed"
    assert "aq-worktrees" not in git(repo, "worktree", "list")
    spans = {}
    for line in record.read_text().splitlines():
        kind, job, _a, t, _p = line.split()
        spans.setdefault(job, {})[kind] = float(t)
    a, b = spans["iso0"], spans["iso1"]
    assert a["start"] < b["end"] and b["start"] < a["end"], "worktree jobs in one repo may run at once"


@pytest.mark.parametrize("marker", ["log", "line", "legacy file"])
def test_an_agent_that_started_and_ended_before_it_was_recorded_is_still_counted(
    root: Path, tmp_path: Path, marker: str
) -> None:
    work = tmp_path / "w"
    work.mkdir()
    add(root, tmp_path / "jobs", "quick", {"engine": "command", "cwd": str(work), "command": stub()})
    dead = subprocess.Popen(["true"])
    dead.wait()
    _claim_by_hand(root, "quick", dead.pid, pidstart=time.time() - 5, attempted=False)
    # What the engine's process leaves as it starts (see supervise.started): it ran, then exited. Its
    # attempt's log, made by the process itself (it names no pid); an aq that started agents through a
    # shell wrote a started line with the pid, and one before that a file of its own: a runner killed
    # across an upgrade leaves them.
    if marker == "log":
        (root / "logs" / "quick.1.log").write_text("")
    elif marker == "line":
        (root / "logs" / "quick.aq.log").write_text(f"aq: attempt 1: agent started, pid {dead.pid}\n")
    else:
        (root / "logs" / "quick.1.started").write_text(f"{dead.pid}\n")
    assert "recovered 1 orphan" in aq("recover", root=root).stdout
    m = meta(root, "quick")
    assert m["agent_pid"] == ("" if marker == "log" else str(dead.pid)), "no pid is made up"
    assert (m["attempts"], m["result"], state_of(root, "quick")) == ("1", "orphaned", "inbox")

"""``aq run --workers N`` over several runner processes (``aq_core/runner_procs.py``): real forks,
real signals, real agents."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import aq, meta, pid_alive, start_runner, state_of, wait_running, wait_until, write_job

from aq_core.runner_procs import process_count, shares, usable_cpus


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The queue root; beside it ``work``, the jobs' folder (made by the ``work`` fixture)."""
    return tmp_path / "queue"


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "work").mkdir()
    return tmp_path / "work"


def add_jobs(root: Path, folder: Path, fronts: dict[str, dict]) -> None:
    paths = [str(write_job(folder, job_id, front)) for job_id, front in fronts.items()]
    added = aq("add", *paths, root=root)
    assert added.returncode == 0, added.stderr


def gated(work: Path, gate: Path, n: int, prefix: str = "g") -> dict[str, dict]:
    """``n`` jobs whose agent waits for ``gate`` to exist (so they all run at once until it does)."""
    command = ["/bin/sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.02; done"]
    return {f"{prefix}{i}": {"engine": "command", "cwd": str(work), "command": command} for i in range(n)}


def building(root: Path) -> list[str]:
    return sorted(p.stem for p in (root / "building").glob("*.md"))


def running_agents(root: Path, n: int) -> dict[str, dict[str, str]] | None:
    """The metas of the ``n`` jobs in building/ once each has its agent's pid recorded, else None."""
    jobs = building(root)
    metas = {j: meta(root, j) for j in jobs}
    return metas if len(jobs) == n and all("agent_pid" in m for m in metas.values()) else None


def wait_agents(runner: subprocess.Popen, log: Path, root: Path, n: int) -> dict[str, dict[str, str]]:
    wait_running(runner, log, lambda: running_agents(root, n), 60, f"{n} agents to run")
    found = running_agents(root, n)
    assert found is not None
    return found


def registered(root: Path) -> list[int]:
    return sorted(int(p.name) for p in (root / "runners").iterdir())


def test_the_workers_are_split_evenly_and_add_up() -> None:
    assert shares(4, 2) == [2, 2]
    assert shares(5, 2) == [3, 2]
    assert shares(7, 3) == [3, 2, 2]
    for n in range(1, 12):
        for p in range(1, n + 1):
            split = shares(n, p)
            assert sum(split) == n and max(split) - min(split) <= 1
    assert process_count(4, None) == min(4, usable_cpus())
    assert process_count(1, None) == 1
    assert process_count(2, 8) == 2  # never more processes than workers
    assert process_count(4, 1) == 1


def test_four_workers_in_two_processes_drain_the_queue_exactly_once(root: Path, work: Path, tmp_path: Path) -> None:
    record, gate = tmp_path / "ran.rec", tmp_path / "gate"
    fronts = gated(work, gate, 4)
    once = ["/bin/sh", "-c", f'echo "$AQ_JOB_ID" >> {record}']
    fronts.update({f"j{i:02d}": {"engine": "command", "cwd": str(work), "command": once} for i in range(30)})
    add_jobs(root, tmp_path / "jobs", fronts)
    log = tmp_path / "runner.log"
    runner = start_runner(root, log, "--once", "--workers", "4", "--processes", "2")
    try:
        # Four gated agents at once: each process runs at most its share (2), so both run two.
        metas = wait_agents(runner, log, root, 4)
    finally:
        gate.touch()
    assert runner.wait(timeout=120) == 0, log.read_text()
    pids = [int(m["pid"]) for m in metas.values()]
    assert sorted(pids.count(p) for p in set(pids)) == [2, 2], pids
    assert runner.pid in pids
    assert sorted(record.read_text().split()) == sorted(f"j{i:02d}" for i in range(30)), "each job ran exactly once"
    assert len(os.listdir(root / "done")) == 34
    assert not os.listdir(root / "inbox") and not os.listdir(root / "building")
    for job_id in fronts:
        assert meta(root, job_id)["attempts"] == "1"
    out = log.read_text()
    child = next(p for p in pids if p != runner.pid)
    assert (
        f"runner started (pid {runner.pid}, 4 workers in 2 processes: pid {runner.pid} runs 2, pid {child} runs 2)"
        in out
    )
    assert f"runner started (pid {child}, 2 of the 4 workers of pid {runner.pid})" in out
    assert out.rstrip().splitlines()[-1].endswith(f"runner stopped (pid {runner.pid} and the 1 other processes)")
    assert not registered(root), "each process unregistered itself"
    assert "runner process pid" not in out, "a process that drained is no news"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_to_the_first_process_stops_every_process_and_agent_gracefully(
    root: Path, work: Path, tmp_path: Path, sig: int
) -> None:
    gate = tmp_path / "never"
    add_jobs(root, tmp_path / "jobs", gated(work, gate, 4))
    log = tmp_path / "runner.log"
    runner = start_runner(root, log, "--workers", "4", "--processes", "2")
    try:
        metas = wait_agents(runner, log, root, 4)
        runners = registered(root)
        assert len(runners) == 2 and runner.pid in runners
        runner.send_signal(sig)
        assert runner.wait(timeout=60) == 0, log.read_text()
    finally:
        if runner.poll() is None:
            runner.kill()
    agents = [int(m["agent_pid"]) for m in metas.values()]
    for pid in [*runners, *agents]:
        assert not pid_alive(pid), f"pid {pid} outlived the stop"
    for job_id in gated(work, gate, 4):
        assert state_of(root, job_id) == "inbox"
        m = meta(root, job_id)
        assert (m["result"], m["attempts"]) == ("stopped", "1")
    assert not registered(root)
    assert log.read_text().count("runner stopped") == 2


def test_kill_9_of_the_first_process_leaves_no_runner_and_recovery_counts_each_attempt_once(
    root: Path, work: Path, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    add_jobs(root, tmp_path / "jobs", gated(work, gate, 4))
    log = tmp_path / "runner.log"
    runner = start_runner(root, log, "--workers", "4", "--processes", "2")
    metas = wait_agents(runner, log, root, 4)
    runners = registered(root)
    assert len(runners) == 2
    runner.kill()
    runner.wait(timeout=10)
    wait_until(lambda: not any(pid_alive(p) for p in runners), 10, "the other runner process to die with the first")
    recovered = aq("recover", root=root)
    assert recovered.returncode == 0, recovered.stderr
    assert "recovered 4 orphan" in recovered.stdout
    agents = [int(m["agent_pid"]) for m in metas.values()]
    wait_until(lambda: not any(pid_alive(p) for p in agents), 10, "the orphaned agents to be ended")
    for job_id in metas:
        assert state_of(root, job_id) == "inbox"
        m = meta(root, job_id)
        assert (m["attempts"], m["result"], m["orphans"]) == ("1", "orphaned", "1"), m
    assert "recovered 0 orphan" in aq("recover", root=root).stdout
    gate.touch()
    assert aq("run", "--once", "--workers", "4", "--processes", "2", root=root).returncode == 0
    for job_id in metas:
        assert (state_of(root, job_id), meta(root, job_id)["attempts"]) == ("done", "2")


def test_a_process_that_dies_is_said_and_the_run_then_exits_non_zero(root: Path, work: Path, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    add_jobs(root, tmp_path / "jobs", gated(work, gate, 4))
    log = tmp_path / "runner.log"
    runner = start_runner(root, log, "--workers", "4", "--processes", "2")
    try:
        wait_agents(runner, log, root, 4)
        child = next(p for p in registered(root) if p != runner.pid)
        os.kill(child, signal.SIGKILL)
        said = f"runner process pid {child} (2 workers) was killed by signal 9; the other processes go on"
        wait_running(runner, log, lambda: said in log.read_text(), 30, "the death to be said")
        gate.touch()
        # The first process goes on: its own two jobs finish; the dead one's are orphans for recovery.
        wait_running(runner, log, lambda: len(os.listdir(root / "done")) == 2, 60, "the first process's jobs")
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=60) == 1, log.read_text()
    finally:
        gate.touch()
        if runner.poll() is None:
            runner.kill()


def test_one_process_is_the_runner_as_before(root: Path, work: Path, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    add_jobs(root, tmp_path / "jobs", gated(work, gate, 4))
    log = tmp_path / "runner.log"
    runner = start_runner(root, log, "--once", "--workers", "4", "--processes", "1")
    try:
        metas = wait_agents(runner, log, root, 4)
        assert registered(root) == [runner.pid]
    finally:
        gate.touch()
    assert runner.wait(timeout=60) == 0
    assert {m["pid"] for m in metas.values()} == {str(runner.pid)}
    out = log.read_text()
    assert f"runner started (pid {runner.pid}, 4 workers)\n" in out
    assert out.count("runner started") == 1 and out.rstrip().endswith("runner stopped")


def test_jobs_sharing_a_lock_never_overlap_across_processes(root: Path, work: Path, tmp_path: Path) -> None:
    held, overlaps, ran = tmp_path / "held", tmp_path / "overlaps", tmp_path / "ran"
    script = f'mkdir {held} || echo "$AQ_JOB_ID" >> {overlaps}; sleep 0.05; echo "$AQ_JOB_ID" >> {ran}; rmdir {held}'
    locked = {"engine": "command", "cwd": str(work), "lock": "db", "command": ["/bin/sh", "-c", script]}
    free = {"engine": "command", "cwd": str(work), "command": ["true"]}
    fronts = {f"locked{i}": locked for i in range(8)} | {f"free{i}": free for i in range(8)}
    add_jobs(root, tmp_path / "jobs", fronts)
    run = aq("run", "--once", "--workers", "4", "--processes", "2", root=root, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert not overlaps.exists(), f"jobs sharing a lock overlapped: {overlaps.read_text()}"
    assert sorted(ran.read_text().split()) == sorted(f"locked{i}" for i in range(8))
    assert len(re.findall(r"runner started \(pid \d+, 2 of the 4 workers", run.stdout)) == 1
    assert len(os.listdir(root / "done")) == 16


@pytest.mark.parametrize("value", ["0", "-1", "abc"])
def test_a_bad_process_count_is_one_line_and_exit_2(root: Path, value: str) -> None:
    result = aq("run", "--once", "--processes", value, root=root)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "--processes" in lines[0] and value in lines[0], result.stderr


def test_the_option_is_in_the_help() -> None:
    out = subprocess.run([sys.executable, "-m", "aq_core", "run", "--help"], capture_output=True, text=True).stdout
    assert "--processes P" in out


def test_threads_already_running_mean_one_process_and_the_journal_says_so(root: Path, capsys) -> None:
    """``aq run`` inside a longer program that runs threads: no fork (a forked copy could inherit a
    lock another thread holds), and the runner's output says why it runs in one process."""
    import threading

    from aq_core.runner_procs import run
    from aq_core.store_open import open_store

    release = threading.Event()
    other = threading.Thread(target=release.wait, daemon=True)
    other.start()
    try:
        assert run(lambda: open_store(root), workers=2, once=True, processes=2) == 0
    finally:
        release.set()
    out = capsys.readouterr().out
    assert "runner runs its 2 workers in one process, not 2: other threads already run in this process" in out
    assert f"runner started (pid {os.getpid()}, 2 workers)" in out
    assert out.count("runner started") == 1

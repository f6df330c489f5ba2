"""The wake-up channel: an idle runner hears ``aq add`` at once; the ``stat`` poll stays the fallback.

The runners here poll ``inbox/`` once an hour (``AQ_POLL_SECONDS``), so a job they start within the
generous caps below was heard through the channel, not found by the poll.
"""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import pytest
from helpers import aq, start_runner, state_of, wait_running, wait_until, write_job

from aq_core.store import State

DEAF = {"AQ_POLL_SECONDS": "3600"}


def _job(tmp_path: Path, job_id: str) -> Path:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return write_job(tmp_path / "jobs", job_id, {"engine": "command", "command": ["/bin/true"], "cwd": str(work)})


def _channel(root: Path, pid: int) -> Path:
    return root / "wake" / str(pid)


def _listening(runner, log: Path, root: Path) -> None:
    fifo = _channel(root, runner.pid)
    wait_running(runner, log, lambda: fifo.exists() and "runner started" in log.read_text(), 60, "the runner to listen")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def _stop(runner) -> None:
    runner.send_signal(signal.SIGTERM)
    runner.wait(timeout=60)


def test_an_idle_runner_starts_a_job_from_aq_add_at_once(tmp_path: Path) -> None:
    root, log = tmp_path / "q", tmp_path / "runner.log"
    runner = start_runner(root, log, env=DEAF)
    try:
        _listening(runner, log, root)
        done = aq("add", str(_job(tmp_path, "heard")), root=root)
        assert done.returncode == 0, done.stderr
        wait_running(runner, log, lambda: state_of(root, "heard") == "done", 60, "the job to run")
    finally:
        _stop(runner)
    # SIGTERM was heard through the channel too (the poll would have taken an hour); the FIFO is gone.
    assert runner.returncode == 0
    assert not _channel(root, runner.pid).exists()
    assert "runner stopped" in log.read_text()


def test_aq_retry_wakes_the_runner(tmp_path: Path) -> None:
    root, log = tmp_path / "q", tmp_path / "runner.log"
    work = tmp_path / "work"
    work.mkdir()
    flag = tmp_path / "fail-once"
    flag.write_text("")
    script = f"if [ -e {flag} ]; then rm {flag}; exit 3; fi"
    path = write_job(
        tmp_path / "jobs", "again", {"engine": "command", "command": ["/bin/sh", "-c", script], "cwd": str(work)}
    )
    runner = start_runner(root, log, env=DEAF)
    try:
        _listening(runner, log, root)
        assert aq("add", str(path), root=root).returncode == 0
        wait_running(runner, log, lambda: state_of(root, "again") == "failed", 60, "the first attempt to fail")
        retried = aq("retry", "again", root=root)
        assert retried.returncode == 0, retried.stderr
        wait_running(runner, log, lambda: state_of(root, "again") == "done", 60, "the retried job to run")
    finally:
        _stop(runner)


def test_the_poll_still_finds_a_job_when_the_channel_is_gone(tmp_path: Path) -> None:
    root, log = tmp_path / "q", tmp_path / "runner.log"
    runner = start_runner(root, log)  # the default poll
    try:
        _listening(runner, log, root)
        _channel(root, runner.pid).unlink()
        done = aq("add", str(_job(tmp_path, "polled")), root=root, timeout=60)
        assert done.returncode == 0, done.stderr
        wait_running(runner, log, lambda: state_of(root, "polled") == "done", 60, "the job to run")
    finally:
        _stop(runner)
    assert runner.returncode == 0


def test_a_killed_runners_channel_never_blocks_aq_add(tmp_path: Path) -> None:
    root, log = tmp_path / "q", tmp_path / "runner.log"
    runner = start_runner(root, log, env=DEAF)
    _listening(runner, log, root)
    stale = _channel(root, runner.pid)
    runner.kill()
    runner.wait(timeout=60)
    assert stat.S_ISFIFO(os.lstat(stale).st_mode)  # left behind: nobody reads it now
    planted = root / "wake" / "not-a-fifo"
    planted.write_text("")
    done = aq("add", str(_job(tmp_path, "after-kill")), root=root, timeout=60)  # a cap: it must not block
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "after-kill"
    assert state_of(root, "after-kill") == "inbox"
    assert planted.read_text() == ""  # only FIFOs get the byte
    # The next runner clears the dead one's FIFO and runs the job.
    log2 = tmp_path / "runner2.log"
    runner2 = start_runner(root, log2, env=DEAF)
    try:
        wait_running(runner2, log2, lambda: state_of(root, "after-kill") == "done", 60, "the job to run")
        assert not stale.exists() or stale == _channel(root, runner2.pid)
    finally:
        _stop(runner2)


def test_two_runners_on_one_queue_both_hear_aq_add(tmp_path: Path) -> None:
    root = tmp_path / "q"
    logs = [tmp_path / "r1.log", tmp_path / "r2.log"]
    runners = [start_runner(root, log, env=DEAF) for log in logs]
    try:
        for runner, log in zip(runners, logs, strict=True):
            _listening(runner, log, root)
        for n in range(4):
            assert aq("add", str(_job(tmp_path, f"pair-{n}")), root=root).returncode == 0
        wait_until(lambda: all(state_of(root, f"pair-{n}") == "done" for n in range(4)), 60, "every job to run")
        assert all(r.poll() is None for r in runners)
    finally:
        for runner in runners:
            _stop(runner)
    assert [r.returncode for r in runners] == [0, 0]
    assert not any((root / "wake").iterdir())


def test_a_signal_whose_wake_up_the_loop_cleared_still_stops_the_runner_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM lands after the loop looked for a signal and before it cleared its wake-up for the
    inbox: the loop must not then sleep a whole poll interval (an hour here) before it stops."""
    import io
    import threading

    from aq_core import runner as runner_module
    from aq_core.journal import Journal
    from aq_core.store_fs import FsStore

    monkeypatch.setattr(runner_module, "POLL", 3600.0)
    store = FsStore(tmp_path / "q")
    out = io.StringIO()
    runner = runner_module.Runner(store, workers=1, journal=Journal(store, out=out))
    token, signalled = store.coord.inbox_token, []

    def signal_between_the_look_and_the_clear() -> object:
        if not signalled:
            signalled.append(True)
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs at once, on this thread
            wait_until(runner.wake.is_set, 10, "the channel's reader to pass the wake-up on")
        return token()

    monkeypatch.setattr(store.coord, "inbox_token", signal_between_the_look_and_the_clear)
    stuck = threading.Timer(20, runner.wake.set)  # a regression must fail the test, not hang it for an hour
    stuck.start()
    try:
        assert runner.run() == 0
    finally:
        alive = stuck.is_alive()
        stuck.cancel()
    assert alive, "the runner slept through its SIGTERM until the test woke it"
    assert signalled and "runner stopped" in out.getvalue()


def test_a_runner_whose_workers_are_all_busy_waits_instead_of_spinning(tmp_path: Path) -> None:
    """With every worker busy and a job waiting, the loop's look that fell due (a quarter second after
    a fill that left a job waiting) must not make each wait return at once: the runner would spin on a
    CPU, and on a shared store poll its database, for as long as its agents run (hours overnight)."""
    import io

    from aq_core import runner as runner_module
    from aq_core.journal import Journal
    from aq_core.store_fs import FsStore

    store = FsStore(tmp_path / "q")
    work = tmp_path / "work"
    work.mkdir()
    for n in range(2):  # one runs for a second and a half while the other waits
        store.add(f"j{n}", f"---\nengine: command\ncwd: {work}\ncommand: [sleep, '1.5']\n---\nGo.\n".encode(), {})
    out = io.StringIO()
    runner = runner_module.Runner(store, workers=1, once=True, journal=Journal(store, out=out))
    waits, wait = [], runner.wake.wait
    runner.wake.wait = lambda timeout=None: waits.append(timeout) or wait(timeout)
    assert runner.run() == 0
    assert [store.locate(f"j{n}") for n in range(2)] == [State.DONE, State.DONE], out.getvalue()
    # About one wait a poll interval (0.05 s) over the 3 s the two jobs run; a spinning loop makes
    # hundreds of thousands of them.
    assert len(waits) < 300, (len(waits), waits.count(0.0))

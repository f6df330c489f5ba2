"""What the runner flushes to disk and what it does not, and why either way nothing is lost.

The runner fsyncs a job's claim (its folder), the attempt's record and the attempt's decision; the
``claimed`` lines and the move out of ``building/`` are not flushed on their own (docs/performance.md).
These tests kill the runner with SIGKILL at the instants between those writes, and rebuild the states
a power cut could leave (the unflushed lines or rename lost), and check that recovery puts every job
in one folder with each start of its agent counted once.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import aq, meta, meta_pairs, state_of, write_job

from aq_core.journal import Journal
from aq_core.runner import Runner
from aq_core.store import State
from aq_core.store_fs import FsStore

# Runs the runner with a SIGKILL of itself at one named instant of a job's path (AQ_TEST_KILL_AT):
#   claimed  - just after the claim's meta lines (not flushed on their own), before the engine starts;
#   started  - just after the engine started (its process made its log), before its attempt line;
#   decided  - just after the durable decision line, before the job file is moved out of building/.
KILLER = r"""
import os, signal, sys, time
from aq_core import store_fs, attempt

at = os.environ["AQ_TEST_KILL_AT"]
append = store_fs.FsStore.append_meta

def append_then_kill(self, job_id, items, durable=True):
    append(self, job_id, items, durable)
    if (at == "claimed" and "claimed" in items) or (at == "decided" and "decision" in items):
        os.kill(os.getpid(), signal.SIGKILL)

store_fs.FsStore.append_meta = append_then_kill

if at == "started":
    started = attempt.spawn.spawn

    def killed_after_start(argv, env, workdir, stdin, log):
        agent = started(argv, env, workdir, stdin, log)
        agent.wait()  # the agent is done: only the runner's record of it is missing
        os.kill(os.getpid(), signal.SIGKILL)

    attempt.spawn.spawn = killed_after_start

from aq_core.cli import main
sys.argv = ["aq", *sys.argv[1:]]
main()
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "queue"


def add_job(root: Path, tmp_path: Path, job_id: str, count: Path, retry: dict | None = None) -> None:
    """Queue a job whose agent appends a line to ``count`` each time it starts."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    front: dict = {"engine": "command", "cwd": str(work), "command": f'echo start >> "{count}"; exit 3'}
    if retry:
        front["retry"] = retry
    result = aq("add", str(write_job(tmp_path / "jobs", job_id, front)), root=root)
    assert result.returncode == 0, result.stderr


def starts(count: Path) -> int:
    return len(count.read_text().splitlines()) if count.exists() else 0


def run_killed_at(root: Path, instant: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, "--root", str(root), "run", "--once"],
        env={**os.environ, "AQ_TEST_KILL_AT": instant},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -9, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("instant", "state", "attempts"),
    [
        ("claimed", "inbox", "0"),  # the agent never started: no attempt counted
        ("started", "inbox", "1"),  # it started (its marker says so) but was not recorded: counted once
        ("decided", "failed", "1"),  # decided, not moved: recovery finishes the move
    ],
)
def test_a_runner_killed_between_its_writes_loses_nothing(
    root: Path, tmp_path: Path, instant: str, state: str, attempts: str
) -> None:
    count = tmp_path / "starts"
    add_job(root, tmp_path, "job", count, retry={"max": 0})
    run_killed_at(root, instant)
    assert state_of(root, "job") == "building"
    # The attempt's log (made by the agent's process as it started: what recovery counts a start by)
    # is there exactly when the agent started; nothing else marks a start.
    assert (root / "logs" / "job.1.log").is_file() == (attempts == "1")
    assert sorted(p.name for p in (root / "logs").iterdir()) == ["job.1.log"] * int(attempts) + ["job.aq.log"]
    result = aq("recover", root=root)
    assert result.returncode == 0, result.stderr
    assert state_of(root, "job") == state
    assert [p.parent.name for p in root.glob("*/job.md")] == [state]  # in exactly one folder
    assert meta(root, "job").get("attempts", "0") == attempts == str(starts(count))
    if state == "inbox":
        assert aq("run", "--once", root=root).returncode == 0
        assert meta(root, "job")["attempts"] == str(starts(count))


def test_claim_lines_lost_to_a_power_cut_count_no_attempt(root: Path, tmp_path: Path) -> None:
    """The claimed lines are flushed with the attempt's record: lost, the attempt's record is lost too,
    and recovery sees a job in building/ with nothing written since its last move: back to inbox/,
    no attempt counted, no orphan counted."""
    count = tmp_path / "starts"
    add_job(root, tmp_path, "first", count)
    add_job(root, tmp_path, "again", count, retry={"max": 2, "on": ["crash"], "backoff": "1s"})
    store = FsStore(root)
    dead = subprocess.Popen(["true"])
    dead.wait()
    # "again" ran once, failed and was requeued by a runner that has died since.
    assert store.claim("again")
    store.append_meta("again", {"claimed": time.time(), "pid": dead.pid, "pidstart": time.time() - 5})
    store.append_meta("again", {"attempt": 1, "attempts": 1, "exit": 3, "result": "crash"})
    store.append_meta("again", {"retries": 1, "next_eligible": 0, "decision": "inbox"})
    assert store.move("again", State.BUILDING, State.INBOX)
    # Both claimed once more; after the power cut only the renames survived, not a line of meta.
    before = {job: meta_pairs(root, job) for job in ("first", "again")}
    assert store.claim("first") and store.claim("again")
    assert aq("recover", root=root).returncode == 0
    for job, attempts in (("first", "0"), ("again", "1")):
        assert state_of(root, job) == "inbox"
        m = meta(root, job)
        assert (m.get("attempts", "0"), m.get("orphans", "0")) == (attempts, "0")
        assert meta_pairs(root, job)[: len(before[job])] == before[job]


@pytest.mark.parametrize("decision", ["done", "inbox"])
def test_a_move_out_of_building_lost_to_a_power_cut_is_finished_by_recovery(
    root: Path, tmp_path: Path, decision: str
) -> None:
    """The rename out of building/ is not flushed on its own: lost, the job is in building/ with its
    durable decision, and recovery makes the same move (the same as a kill between the two)."""
    count = tmp_path / "starts"
    add_job(root, tmp_path, "job", count)
    store = FsStore(root)
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert store.claim("job")
    store.append_meta("job", {"claimed": time.time(), "pid": dead.pid, "pidstart": time.time() - 5})
    store.append_meta("job", {"attempt": 1, "attempts": 1, "exit": 0, "result": "ok", "decision": decision})
    assert aq("recover", root=root).returncode == 0
    assert state_of(root, "job") == decision
    assert meta(root, "job")["attempts"] == "1"


class _Syscalls:
    """Records, in order, the fsyncs, writes to meta and renames of a runner in this process."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[tuple[str, str, bytes]] = []
        fsync, write, rename = os.fsync, os.write, os.rename

        def path_of(fd: int) -> str:
            try:
                return os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                return ""

        def on_fsync(fd: int) -> None:
            self.events.append(("fsync", path_of(fd), b""))
            fsync(fd)

        def on_write(fd: int, data: bytes) -> int:
            where = path_of(fd)
            if where.endswith(".meta"):
                self.events.append(("write", where, bytes(data)))
            return write(fd, data)

        def on_rename(src: str, dst: str) -> None:
            rename(src, dst)
            self.events.append(("rename", str(dst), str(src).encode()))

        monkeypatch.setattr(os, "fsync", on_fsync)
        monkeypatch.setattr(os, "write", on_write)
        monkeypatch.setattr(os, "rename", on_rename)

    def index(self, kind: str, where: str, data: bytes = b"", start: int = 0) -> int:
        for i, (k, w, d) in enumerate(self.events[start:], start):
            if k == kind and w.endswith(where) and data in d:
                return i
        raise AssertionError(f"no {kind} of {where} {data!r} after event {start}: {self.events}")


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name a file descriptor")
def test_the_attempt_record_and_the_decision_are_flushed_before_what_depends_on_them(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = tmp_path / "starts"
    add_job(root, tmp_path, "job", count, retry={"max": 0})
    calls = _Syscalls(monkeypatch)
    Runner(FsStore(root), once=True, journal=Journal(FsStore(root), out=io.StringIO())).run()
    assert state_of(root, "job") == "failed" and starts(count) == 1
    # The claim is on disk before anything is written about it.
    claim = calls.index("rename", "/building/job.md")
    assert calls.index("fsync", "/building") == claim + 1
    # The attempt's record is flushed (and with it the claimed lines before it in the file)
    # before the decision is written: a power cut loses no start of the agent recovery could count.
    record = calls.index("write", "/meta/job.meta", b"attempt=1\n", claim)
    flushed = calls.index("fsync", "/meta/job.meta", start=record)
    decision = calls.index("write", "/meta/job.meta", b"decision=failed\n", record)
    assert flushed < decision
    # The decision is flushed before the job leaves building/: a lost rename is replayed from it.
    assert calls.index("fsync", "/meta/job.meta", start=decision) < calls.index(
        "rename", "/failed/job.md", start=decision
    )

"""Every move of a job: decision written first, the file moved, the journal told, the row journalled,
the notifier called; a move cut short by kill -9 after its decision is finished by recovery."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from aq_core import transitions
from aq_core.decisions import Decision
from aq_core.inbox import Inbox
from aq_core.journal import Journal
from aq_core.records import journal_path
from aq_core.recovery import recover_one
from aq_core.store import State
from aq_core.store_fs import FsStore

AQ_CORE = Path(transitions.__file__).parent
JOB = b'---\nengine: command\ncommand: ["true"]\n---\nDo the task.\n'


@pytest.fixture
def store(tmp_path: Path) -> FsStore:
    return FsStore(tmp_path / "queue")


@pytest.fixture
def journal(store: FsStore) -> Journal:
    return Journal(store, out=io.StringIO())


class Told:
    def __init__(self) -> None:
        self.calls: list[tuple[str, State]] = []

    def __call__(self, job_id: str, state: State) -> None:
        self.calls.append((job_id, state))


def queued(store: FsStore, job_id: str = "j1", claimed: bool = False) -> str:
    store.add(job_id, JOB, {"added": 1.0, "add_dir": str(store.root)})
    if claimed:
        assert transitions.claim(store, job_id)
        store.append_meta(job_id, {"claimed": 2.0, "attempt": 1, "attempts": 1})
    return job_id


def pairs(store: FsStore, job_id: str) -> list[tuple[str, str]]:
    return list(store.read_meta(job_id).pairs)


def decided(store: FsStore, job_id: str) -> str | None:
    values = [v for k, v in pairs(store, job_id) if k == "decision"]
    return values[-1] if values else None


def journalled_rows(store: FsStore) -> bytes:
    path = journal_path(store)
    return path.read_bytes() if path.exists() else b""


def aq_log(store: FsStore, job_id: str) -> str:
    return store.files.aq_log_path(job_id).read_text()


def test_only_transitions_moves_a_job() -> None:
    """``store.move(`` and the claim (with its lines or without) are called from transitions.py and nowhere else."""
    calls = re.compile(r"(?<!transitions)\.(move|claim|claim_noting)\(|\"claim_noting\"")
    found = []
    for path in sorted(AQ_CORE.rglob("*.py")):
        name = path.relative_to(AQ_CORE).as_posix()
        if name == "transitions.py" or name.startswith("store"):  # the stores implement the verbs
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if calls.search(line):
                found.append(f"{name}:{number}: {line.strip()}")
    assert found == []
    assert calls.search((AQ_CORE / "transitions.py").read_text())


def test_finish_writes_its_decision_moves_journals_and_notifies(store: FsStore, journal: Journal) -> None:
    job = queued(store, claimed=True)
    told, after = Told(), []
    assert transitions.finish(store, journal, job, State.DONE, {"result": "ok"}, "ok (1s)", told, after.append)
    assert store.locate(job) is State.DONE
    assert pairs(store, job)[-3:-1] == [("result", "ok"), ("decision", "done")]
    assert told.calls == [(job, State.DONE)] and after == [State.DONE]
    assert job.encode() in journalled_rows(store)
    assert pairs(store, job)[-1][0] == "row"  # and kept in meta (``row_line``)
    assert "done: ok (1s)" in aq_log(store, job)


def test_a_requeue_keeps_its_backoff_and_is_not_a_finished_job(store: FsStore, journal: Journal) -> None:
    job = queued(store, claimed=True)
    decision = Decision("inbox", {"result": "crash", "retries": 1, "next_eligible": 99.5})
    told = Told()
    assert transitions.apply(store, journal, job, decision, {"exit": 1}, "crash; retry 1", told) is State.INBOX
    assert store.locate(job) is State.INBOX
    meta = store.read_meta(job)
    assert (meta.get("next_eligible"), meta.get("decision")) == ("99.5", "inbox")
    assert told.calls == [] and journalled_rows(store) == b""


def test_stop_goes_back_without_a_retry(store: FsStore, journal: Journal) -> None:
    job = queued(store, claimed=True)
    assert transitions.stop(store, journal, job, {"exit": -15}, "stopped by the runner")
    assert store.locate(job) is State.INBOX
    assert (store.read_meta(job).get("result"), decided(store, job)) == ("stopped", "inbox")
    assert store.read_meta(job).get("retries") is None


def test_a_move_already_made_by_someone_else_is_left_alone(store: FsStore, journal: Journal) -> None:
    job = queued(store)  # never claimed: not in building/
    told = Told()
    assert not transitions.finish(store, journal, job, State.FAILED, {"result": "crash"}, "crash", told)
    assert store.locate(job) is State.INBOX and told.calls == []
    assert "no longer in building/" in aq_log(store, job)


def test_unstarted_and_invalid_jobs_fail_without_an_attempt(store: FsStore, journal: Journal) -> None:
    first = queued(store, "first", claimed=True)
    told = Told()
    assert transitions.fail_unstarted(store, journal, first, "checkpoint_failed", "wip: no worktree", told)
    assert store.locate(first) is State.FAILED and decided(store, first) == "failed"
    bad = queued(store, "bad")
    assert transitions.invalid(store, journal, bad, "engine: nope: not installed here", told)
    assert store.locate(bad) is State.FAILED
    assert (store.read_meta(bad).get("result"), decided(store, bad)) == ("invalid", "failed")
    assert told.calls == [(first, State.FAILED), (bad, State.FAILED)]
    assert b"first" in journalled_rows(store) and b"bad" in journalled_rows(store)


def test_cancel_of_a_waiting_job(store: FsStore, journal: Journal) -> None:
    job = queued(store)
    told = Told()
    assert transitions.cancel(store, journal, job, told)
    meta = store.read_meta(job)
    assert store.locate(job) is State.FAILED
    assert (meta.get("result"), meta.get("cancel_requested"), meta.get("decision")) == ("cancelled", "1", "failed")
    assert told.calls == [(job, State.FAILED)]


def test_dependency_failed_fails_the_job_without_an_attempt(store: FsStore, journal: Journal) -> None:
    job = queued(store, "child")
    told = Told()
    assert transitions.dependency_failed(store, journal, job, "parent", told)
    meta = store.read_meta(job)
    assert store.locate(job) is State.FAILED
    assert (meta.get("result"), meta.get("failed_dependency"), meta.get("decision")) == (
        "dependency_failed",
        "parent",
        "failed",
    )
    assert meta.integer("attempts") == 0 and meta.runs() == []
    assert told.calls == [(job, State.FAILED)] and b"child" in journalled_rows(store)
    assert "dependency parent failed" in aq_log(store, job)


def test_retry_requeues_a_failed_job_and_says_so(store: FsStore, journal: Journal) -> None:
    job = queued(store)
    assert transitions.cancel(store, journal, job)
    assert transitions.retry(store, journal, job)
    meta = store.read_meta(job)
    assert store.locate(job) is State.INBOX
    assert (meta.get("result"), meta.get("retries"), meta.get("decision")) == ("queued", "0", "inbox")
    assert "retried: back in inbox/" in aq_log(store, job)
    assert transitions.pending(meta, State.FAILED) is State.INBOX


def test_a_job_retried_by_an_older_aq_is_not_failed_again(store: FsStore, journal: Journal) -> None:
    job = queued(store, claimed=True)
    assert transitions.finish(store, journal, job, State.FAILED, {"result": "crash"}, "crash")
    # What `aq retry` wrote before it had a decision line of its own: requeued, then the rename.
    store.append_meta(job, {"requeued": 5.0, "retries": 0, "result": "queued"})
    assert store.move(job, State.FAILED, State.INBOX)
    assert transitions.pending(store.read_meta(job)) is None
    assert [c.id for c in Inbox(store, store.files.config(), journal, Told()).round(set())] == [job]
    assert store.locate(job) is State.INBOX


def test_a_job_file_dropped_again_after_its_job_failed_is_not_failed_by_replay(
    store: FsStore, journal: Journal
) -> None:
    job = queued(store, claimed=True)
    assert transitions.finish(store, journal, job, State.FAILED, {"result": "crash"}, "crash")
    (store.root / "failed" / f"{job}.md").unlink()  # the user deleted it, then saved the file again
    (store.root / "inbox" / f"{job}.md").write_bytes(JOB)
    assert transitions.pending(store.read_meta(job), State.INBOX) is None
    assert [c.id for c in Inbox(store, store.files.config(), journal, Told()).round(set())] == [job]


def test_orphan_recovery_moves_where_the_decision_says(store: FsStore, journal: Journal) -> None:
    job = queued(store, claimed=True)
    told = Told()
    decision = Decision("failed", {"result": "retries_exhausted", "last_failure": "orphaned"})
    assert transitions.recover_orphan(store, journal, job, decision, {"orphans": 3}, "recovered", told) is State.FAILED
    assert decided(store, job) == "failed" and told.calls == [(job, State.FAILED)]
    other = queued(store, "other", claimed=True)
    assert transitions.release_unstarted(store, journal, other, "recovered: back")
    assert store.locate(other) is State.INBOX and decided(store, other) == "inbox"


KILLED_MID_MOVE = """
import os, signal, sys
from pathlib import Path
from aq_core import transitions
from aq_core.journal import Journal
from aq_core.store import State
from aq_core.store_fs import FsStore

store = FsStore(Path(sys.argv[1]))
job, how = sys.argv[2], sys.argv[3]
journal = Journal(store)
if how == "finish":
    transitions.claim(store, job)
    store.append_meta(job, {**store.coord.claim_meta(), "claimed": 1.0, "attempt": 1, "attempts": 1})
store.move = lambda *a: os.kill(os.getpid(), signal.SIGKILL)  # kill -9 between decision and rename
if how == "finish":
    transitions.finish(store, journal, job, State.DONE, {"result": "ok"}, "ok")
else:
    transitions.dependency_failed(store, journal, job, "parent")
"""


def kill_mid_move(store: FsStore, job: str, how: str) -> None:
    done = subprocess.run([sys.executable, "-c", KILLED_MID_MOVE, str(store.root), job, how], capture_output=True)
    assert done.returncode == -9, done.stderr


def test_recovery_finishes_a_move_cut_short_after_its_decision(store: FsStore, journal: Journal) -> None:
    job = queued(store)
    kill_mid_move(store, job, "finish")
    assert store.locate(job) is State.BUILDING and decided(store, job) == "done"
    told = Told()
    assert recover_one(store, journal, job, told)
    assert store.locate(job) is State.DONE
    assert told.calls == [(job, State.DONE)] and job.encode() in journalled_rows(store)
    assert "died after finishing the attempt; moved to done/" in aq_log(store, job)


def test_the_runner_finishes_a_move_out_of_inbox_cut_short(store: FsStore, journal: Journal) -> None:
    job = queued(store, "child")
    kill_mid_move(store, job, "dependency_failed")
    assert store.locate(job) is State.INBOX and decided(store, job) == "failed"
    told = Told()
    inbox = Inbox(store, store.files.config(), journal, told)
    assert list(inbox.round(set())) == []  # not offered to run: its move is finished instead
    assert store.locate(job) is State.FAILED
    assert store.read_meta(job).get("result") == "dependency_failed"
    assert told.calls == [(job, State.FAILED)]

"""The PostgreSQL store's fewer round trips: reads ahead, and meta committed without waiting for the disk.

Against a real server started by the tests (loopback, a temp dir).
"""

from __future__ import annotations

import contextlib
import shlex
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pgserver import NewDb, PgServer, dbname, open_store
from test_store_pg import add_jobs, aqpg

from aq_core.store import State

pytestmark = pytest.mark.requires("postgresql")


def _counting(store) -> list[int]:
    """Count the store's statements (each ``conn.do`` is one round trip or one pipeline)."""
    calls = [0]
    do = store.conn.do

    def counted(fn, retry_for=None):
        calls[0] += 1
        return do(fn, retry_for)

    store.conn.do = counted
    return calls


def _claim_with_a_line_not_waited_for(store, jobs: tuple[str, ...]) -> None:
    """Add and claim each job, then append a durable line and one that does not wait for the disk."""
    for job in jobs:
        store.add(job, b"x", {})
        assert store.claim(job)
        store.append_meta(job, {"claimed": 1})  # the first append after a claim waits for the disk
        store.append_meta(job, {"host": "h"}, durable=False)


def _lose_the_line_not_waited_for(server: PgServer, url: str, job: str) -> None:
    """What a server crash does to a commit that did not wait for the disk: its rows are gone."""
    db = dbname(url)
    server.sql("ALTER TABLE aq_meta DISABLE TRIGGER aq_meta_insert_only", dbname=db)
    server.sql(f"DELETE FROM aq_meta WHERE job_id = '{job}' AND key = 'host'", dbname=db)
    server.sql("ALTER TABLE aq_meta ENABLE TRIGGER aq_meta_insert_only", dbname=db)


def test_reads_ahead_answer_as_fresh_reads_in_one_query_and_see_the_stores_own_writes(
    pg_pair: tuple,
) -> None:
    _, store, other = pg_pair
    for n in range(3):
        store.add(f"j{n}", f"job {n}\n".encode(), {"add_dir": "/x", "priority": n})
    store.claim("j2")
    ids = ["j0", "j1", "j2", "nope"]
    fresh = {
        i: (
            store.read_meta(i).last,
            store.coord.job_version(i, State.INBOX),
            store.coord.job_version(i, State.BUILDING),
            store.entry(i, State.INBOX),
        )
        for i in ids
    }
    calls = _counting(store)
    with store.prefetched(ids):
        assert calls[0] == 1
        for i in ids[:3]:
            got = (
                store.read_meta(i).last,
                store.coord.job_version(i, State.INBOX),
                store.coord.job_version(i, State.BUILDING),
                store.entry(i, State.INBOX),
            )
            assert got == fresh[i], i
        assert store.read_job("j0", State.INBOX) == b"job 0\n"
        assert calls[0] == 1
        assert store.read_meta("nope").last == fresh["nope"][0]  # not in the database: read as before
        assert calls[0] == 2
        # Another writer's line is not in what was read ahead; this store's own writes are.
        other.append_meta("j1", {"by_other": 1})
        assert "by_other" not in store.read_meta("j1").last
        store.append_meta("j0", {"mine": 1})
        assert store.read_meta("j0").get("mine") == "1"
        assert store.move("j1", State.INBOX, State.FAILED)
        assert store.entry("j1", State.INBOX) is None
        assert store.coord.job_version("j1", State.FAILED) is not None
        # Reads ahead are this thread's: another thread reads the database.
        seen = []
        reader = threading.Thread(target=lambda: seen.append(store.read_meta("j0").get("mine")))
        reader.start()
        reader.join()
        assert seen == ["1"]
    assert store.read_meta("j1").get("by_other") == "1"


def test_meta_appended_without_waiting_is_committed_again_with_the_next_durable_append(
    new_db: NewDb,
    tmp_path: Path,
    pg_server: PgServer,
) -> None:
    url = new_db()
    store = open_store(url, tmp_path / "a")
    try:
        _claim_with_a_line_not_waited_for(store, ("lost", "kept"))
        _lose_the_line_not_waited_for(pg_server, url, "lost")
        db = dbname(url)
        assert store.read_meta("lost").get("host") is None
        for job in ("lost", "kept"):
            store.append_meta(job, {"attempt": 1, "attempts": 1})
            # The lines are back before the durable ones, and none is there twice.
            keys = [
                k
                for k, _ in pg_server.sql(
                    "SELECT key, value FROM aq_meta WHERE job_id = %s ORDER BY seq", (job,), dbname=db
                )
            ]
            assert keys == ["claimed", "host", "attempt", "attempts"], (job, keys)
        # Once a durable append followed, they are not sent again.
        store.append_meta("lost", {"result": "ok"})
        keys = [k for (k,) in pg_server.sql("SELECT key FROM aq_meta WHERE job_id = 'lost' ORDER BY seq", dbname=db)]
        assert keys == ["claimed", "host", "attempt", "attempts", "result"]
    finally:
        store.close()


def test_a_lock_taken_to_claim_is_confirmed_by_the_claim_and_a_lost_one_fails_it(
    pg_pair: tuple,
    pg_server: PgServer,
) -> None:
    url, store, other = pg_pair
    for job in ("a", "b"):
        store.add(job, b"x", {})
    lock = store.coord.try_lock_to_claim("job:a")
    assert lock is not None
    assert other.coord.try_lock("job:a") is None  # seen by every runner at once
    # A server crash may lose a commit that did not wait for the disk: take the row away.
    pg_server.sql("DELETE FROM aq_locks WHERE name = 'job:a'", dbname=dbname(url))
    assert not store.claim("a")  # the claim applies only while the lock is held
    assert store.locate("a") is State.INBOX
    lock.release()
    lock = store.coord.try_lock_to_claim("job:b")
    assert store.claim("b")
    assert store.coord.unconfirmed() == []  # the claim confirmed it (durable with the claim's first append)
    assert other.coord.try_lock("job:b") is None
    lock.release()


def test_engine_records_read_ahead_in_one_query_and_an_append_is_seen(
    new_db: NewDb,
    tmp_path: Path,
) -> None:
    url = new_db()
    store = open_store(url, tmp_path / "a")
    try:
        store.engines.append("claude", {"paused": 1, "pause_until": 5})
        store.engines.append("codex", {"limit_streak": 2})
        fresh = {name: store.engines.read(name).last for name in store.engines.names()}
        calls = _counting(store)
        with store.engines.prefetched():
            assert {name: store.engines.read(name).last for name in store.engines.names()} == fresh
            assert store.engines.read("nobody").last == {}
            assert calls[0] == 1
            store.engines.append("codex", {"limit_streak": 0})
            assert store.engines.read("codex").get("limit_streak") == "0"
        assert store.engines.read("codex").get("limit_streak") == "0"
    finally:
        store.close()


def test_a_move_to_done_brings_the_meta_its_row_is_computed_from(
    new_db: NewDb,
    tmp_path: Path,
) -> None:
    url = new_db()
    store = open_store(url, tmp_path / "a")
    try:
        for job in ("a", "b"):
            store.add(job, b"x", {"add_dir": "/x"})
            assert store.claim(job)
            store.append_meta(job, {"result": "ok", "decision": "done"})
        calls = _counting(store)
        assert store.move("a", State.BUILDING, State.DONE)
        assert calls[0] == 1
        assert store.read_meta("a").last == {"add_dir": "/x", "result": "ok", "decision": "done"}
        assert calls[0] == 1  # read with the move
        assert store.read_meta("a").last["result"] == "ok"
        assert calls[0] == 2  # once only: the next read asks the database
        assert store.move("b", State.BUILDING, State.DONE)
        store.append_meta("b", {"wip_commit": "abc"})  # written after the move: read again
        assert store.read_meta("b").get("wip_commit") == "abc"
    finally:
        store.close()


def test_reads_ahead_hold_one_chunk_at_a_time_in_the_order_given(
    new_db: NewDb,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import aq_core.store_pg.readahead as pg

    monkeypatch.setattr(pg, "PREFETCH_CHUNK", 2)
    url = new_db()
    store = open_store(url, tmp_path / "a")
    try:
        ids = [f"j{n}" for n in range(5)]
        for n, job in enumerate(ids):
            store.add(job, b"x", {"n": n})
        calls = _counting(store)
        with store.prefetched(ids):
            assert [store.read_meta(job).get("n") for job in ids] == ["0", "1", "2", "3", "4"]
            assert calls[0] == 3  # chunks of 2, 2 and 1
            assert store.read_meta("j0").get("n") == "0"  # its chunk is gone: asked afresh
            assert calls[0] == 4
    finally:
        store.close()


def test_a_connection_left_busy_by_a_cut_off_pipeline_counts_as_lost(new_db: NewDb) -> None:
    import psycopg

    from aq_core.store_pg.connection import _connection_lost

    url = new_db()
    with psycopg.connect(url, autocommit=True) as conn:
        error = psycopg.OperationalError("cannot exit pipeline mode while busy")
        assert not _connection_lost(error, conn)  # idle: a statement's own error
        with conn.pipeline():
            conn.execute("SELECT pg_sleep(0.2)")
            conn.pgconn.flush()
            assert _connection_lost(error, conn)  # results still due: retried on a new connection


def _standby_wait(server: PgServer, on: bool) -> None:
    """Make every commit that waits for the disk also wait for a standby that never comes (or stop)."""
    names = "'aq_never'" if on else "''"
    server.sql(f"ALTER SYSTEM SET synchronous_standby_names = {names}")
    server.sql("SELECT pg_reload_conf()")


@contextlib.contextmanager
def standby_server(tmp_path: Path) -> Iterator[tuple[PgServer, str, Any]]:
    """(a server of its own, a new database's URL, a store on it): its commits wait for the disk."""
    from aq_core.store_pg import init_schema

    server = PgServer(crash_safe=True).start()  # synchronous_commit on: durable commits wait
    store = None
    try:
        url = server.url(server.create_database())
        init_schema(url)
        store = open_store(url, tmp_path / "a")
        yield server, url, store
    finally:
        if store is not None:
            _standby_wait(server, False)
            store.close()
        server.destroy()


def standby_wait_seen(server: PgServer, store: Any) -> None:
    """``_standby_wait(server, True)``, once the store's backend sees it (at its next statement)."""
    _standby_wait(server, True)
    while store.conn.do(lambda db, _: db.execute("SHOW synchronous_standby_names").fetchone()[0]) != "aq_never":
        threading.Event().wait(0.05)


def test_writes_that_need_not_wait_for_the_disk_commit_without_waiting_and_durable_ones_wait(tmp_path: Path) -> None:
    """The lock taken to claim, the claim's meta lines, the kept row and the lock's release commit
    without waiting (each one statement); the attempt's durable record waits, and commits them again.

    A server whose durable commits wait for a synchronous standby that never connects tells the
    two apart without timing: a write that waits for the disk hangs until the standby is given up.
    """
    with standby_server(tmp_path) as (server, url, store):
        for job in ("finished", "next"):
            store.add(job, b"x", {})
        assert store.claim("finished")
        assert store.move("finished", State.BUILDING, State.DONE)
        standby_wait_seen(server, store)

        def no_wait() -> None:
            lock = store.coord.try_lock_to_claim("job:next")
            assert lock is not None
            store.append_meta("next", {"claimed": 1, "host": "h"}, durable=False)
            assert store.keep_finished_row("finished", State.DONE, '{"id": "finished"}', []) is not None
            lock.release()

        worker = threading.Thread(target=no_wait, daemon=True)
        worker.start()
        worker.join(120)  # a guard against a hang, not a measure: these writes never wait
        assert not worker.is_alive(), "a write that need not wait for the disk waited for it"
        db = dbname(url)
        assert server.sql("SELECT count(*) FROM aq_locks", dbname=db) == [(0,)]
        assert server.sql("SELECT row_token = op_token FROM aq_jobs WHERE id = 'finished'", dbname=db) == [(True,)]

        durable = threading.Thread(target=store.append_meta, args=("next", {"attempt": 1}), daemon=True)
        durable.start()
        while not server.sql("SELECT 1 FROM pg_stat_activity WHERE wait_event = 'SyncRep'"):
            durable.join(0.05)  # the durable append waits for the standby
        _standby_wait(server, False)  # given up: the waiting commit returns
        durable.join()
        keys = [k for (k,) in server.sql("SELECT key FROM aq_meta WHERE job_id = 'next' ORDER BY seq", dbname=db)]
        assert keys == ["claimed", "host", "attempt"]


def test_a_cancel_written_in_meta_by_another_host_ends_the_agent(new_db: NewDb, tmp_path: Path) -> None:
    """The meta version the runner notes as the agent starts comes from the attempt's record; a cancel
    another host writes after it (here: the agent itself, then it sleeps) ends the agent."""
    url = new_db()
    work = tmp_path / "work"
    work.mkdir()
    ask = (
        "import os; from aq_core.store_pg import PgStore; s = PgStore(os.environ['AQ_STORE'], local=os.environ['PEEK']);"
        " s.append_meta(os.environ['AQ_JOB_ID'], {'cancel_requested': 1}); s.close()"
    )
    command = f"PEEK={shlex.quote(str(tmp_path / 'peek'))} {shlex.quote(sys.executable)} -c {shlex.quote(ask)}; exec sleep 600"
    add_jobs(
        url, tmp_path / "jobs", {"asked": {"engine": "command", "cwd": str(work), "command": command}}, tmp_path / "a"
    )
    ran = aqpg(url, "run", "--once", host="host-a", root=tmp_path / "a")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    store = open_store(url, tmp_path / "check")
    try:
        meta = store.read_meta("asked")
        assert (meta.get("result"), meta.get("attempts")) == ("cancelled", "1")
        assert store.locate("asked") is State.FAILED
    finally:
        store.close()


def test_a_decision_and_its_move_commit_in_one_statement(new_db: NewDb, tmp_path: Path, pg_server: PgServer) -> None:
    """``transitions.finish`` on PostgreSQL: the decision's lines, the claim's lines committed without
    waiting, and the move in one round trip; the finished row is computed from all of them; a move
    that finds the job gone still appends the lines, as the two calls did."""
    from aq_core import transitions
    from aq_core.journal import Journal

    url = new_db()
    store = open_store(url, tmp_path / "a")
    journal = Journal(store)
    try:
        _claim_with_a_line_not_waited_for(store, ("ok", "gone"))
        # A server crash lost the lines of "ok" that did not wait: the durable decision commits them again.
        _lose_the_line_not_waited_for(pg_server, url, "ok")
        db = dbname(url)
        calls = _counting(store)
        kept: list = []
        store.keep_finished_row = lambda job_id, state, text, summary: kept.append((job_id, text)) or "v"
        assert transitions.finish(store, journal, "ok", State.DONE, {"result": "ok", "attempts": 1}, "ok")
        assert calls[0] == 1  # the lines and the move: one statement
        keys = [k for (k,) in pg_server.sql("SELECT key FROM aq_meta WHERE job_id = 'ok' ORDER BY seq", dbname=db)]
        assert keys == ["claimed", "host", "result", "attempts", "decision"]
        assert store.locate("ok") is State.DONE
        assert kept and kept[0][0] == "ok" and '"result": "ok"' in kept[0][1]  # its row saw the decision
        # Taken away meanwhile (recovered by another runner): the lines are there, the job is not moved.
        pg_server.sql("UPDATE aq_jobs SET state = 'inbox' WHERE id = 'gone'", dbname=db)
        assert not transitions.finish(store, journal, "gone", State.FAILED, {"result": "crash"}, "crash")
        assert store.read_meta("gone").get("decision") == "failed"
        assert store.locate("gone") is State.INBOX
        # Back to the queue with a decision: the same thread's next read is the whole meta.
        assert store.claim("gone")
        assert transitions.requeue(store, journal, "gone", {"next_eligible": 5}, "again")
        assert dict(store.read_meta("gone").pairs) == {
            "claimed": "1",
            "host": "h",
            "result": "crash",
            "decision": "inbox",
            "next_eligible": "5",
        }
    finally:
        store.close()


def test_the_meta_version_after_a_durable_append_needs_no_round_trip(pg_pair: tuple) -> None:
    """The runner asks for the job's meta version right after the attempt's record: the append told it."""
    _, store, other = pg_pair
    store.add("job", b"x", {"engine": "command"})
    assert store.claim("job")
    store.append_meta("job", {"claimed": 1}, durable=False)
    store.append_meta("job", {"attempt": 1, "attempts": 1})
    calls = _counting(store)
    assert store.coord.meta_version("job") == 4 == len(store.read_meta("job").pairs)
    assert calls[0] == 1  # the read, not the version
    other.append_meta("job", {"cancel_requested": 1})  # another host asks to cancel
    assert store.coord.meta_version("job") == 5  # asked again: the server's count
    assert calls[0] == 2


def test_a_finished_jobs_kept_row_goes_with_the_release_of_its_lock(new_db: NewDb, tmp_path: Path) -> None:
    """The row kept for a job moved into done/ under its lock (an attempt, a recovery) is written by
    the lock's release, in its one statement; without the lock it is written at once."""
    url = new_db()
    store = open_store(url, tmp_path / "a")

    def kept(job: str) -> tuple:
        return tuple(
            store.conn.do(
                lambda conn, _: conn.execute(
                    "SELECT row_token = op_token, row_json, (SELECT count(*) FROM aq_locks WHERE name = %s)"
                    " FROM aq_jobs WHERE id = %s",
                    ("job:" + job, job),
                ).fetchone()
            )
        )

    try:
        for job in ("locked", "free"):
            store.add(job, b"x", {})
        lock = store.coord.try_lock("job:locked")
        assert lock is not None
        for job in ("locked", "free"):
            assert store.claim(job)
            assert store.move(job, State.BUILDING, State.DONE)
        assert store.keep_finished_row("locked", State.DONE, '{"id": "locked"}', []) is not None
        assert kept("locked") == (None, None, 1)  # not yet: it waits for the release
        calls = _counting(store)
        lock.release()
        assert calls[0] == 1  # the row and the release: one statement
        assert kept("locked") == (True, '{"id": "locked"}', 0)
        assert store.keep_finished_row("free", State.DONE, '{"id": "free"}', []) is not None
        assert kept("free") == (True, '{"id": "free"}', 0)  # no lock: kept at once
    finally:
        store.close()

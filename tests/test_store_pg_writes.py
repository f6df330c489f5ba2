"""The PostgreSQL store's fewer round trips: reads ahead, and meta committed without waiting for the disk.

Against a real server started by the tests (loopback, a temp dir).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from pgserver import PgServer, pg_server  # noqa: F401  (pg_server is a fixture)
from test_store_pg import NewDb, dbname, new_db  # noqa: F401  (new_db is a fixture)

from aq_core.store import State

pytestmark = pytest.mark.requires("postgresql")


def _store(url: str, local: Path):
    from aq_core.store_pg import PgStore

    return PgStore(url, local=local)


def _counting(store) -> list[int]:
    """Count the store's statements (each ``conn.do`` is one round trip or one pipeline)."""
    calls = [0]
    do = store.conn.do

    def counted(fn, retry_for=None):
        calls[0] += 1
        return do(fn, retry_for)

    store.conn.do = counted
    return calls


def test_reads_ahead_answer_as_fresh_reads_in_one_query_and_see_the_stores_own_writes(
    new_db: NewDb,  # noqa: F811
    tmp_path: Path,
) -> None:
    url = new_db()
    store, other = _store(url, tmp_path / "a"), _store(url, tmp_path / "b")
    try:
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
    finally:
        store.close()
        other.close()


def test_meta_appended_without_waiting_is_committed_again_with_the_next_durable_append(
    new_db: NewDb,  # noqa: F811
    tmp_path: Path,
    pg_server: PgServer,  # noqa: F811
) -> None:
    url = new_db()
    store = _store(url, tmp_path / "a")
    try:
        for job in ("lost", "kept"):
            store.add(job, b"x", {})
            assert store.claim(job)
            store.append_meta(job, {"claimed": 1, "host": "h"}, durable=False)
        # A server crash loses a commit that did not wait for the disk: take its rows away.
        db = dbname(url)
        pg_server.sql("ALTER TABLE aq_meta DISABLE TRIGGER aq_meta_insert_only", dbname=db)
        pg_server.sql("DELETE FROM aq_meta WHERE job_id = 'lost' AND key IN ('claimed', 'host')", dbname=db)
        pg_server.sql("ALTER TABLE aq_meta ENABLE TRIGGER aq_meta_insert_only", dbname=db)
        assert store.read_meta("lost").get("claimed") is None
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
    new_db: NewDb,  # noqa: F811
    tmp_path: Path,
    pg_server: PgServer,  # noqa: F811
) -> None:
    url = new_db()
    store, other = _store(url, tmp_path / "a"), _store(url, tmp_path / "b")
    try:
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
        assert store.coord.unconfirmed() == []  # the durable claim made the lock durable with it
        assert other.coord.try_lock("job:b") is None
        lock.release()
    finally:
        store.close()
        other.close()


def test_engine_records_read_ahead_in_one_query_and_an_append_is_seen(
    new_db: NewDb,  # noqa: F811
    tmp_path: Path,
) -> None:
    url = new_db()
    store = _store(url, tmp_path / "a")
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
    new_db: NewDb,  # noqa: F811
    tmp_path: Path,
) -> None:
    url = new_db()
    store = _store(url, tmp_path / "a")
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
    new_db: NewDb,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import aq_core.store_pg.readahead as pg

    monkeypatch.setattr(pg, "PREFETCH_CHUNK", 2)
    url = new_db()
    store = _store(url, tmp_path / "a")
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


def test_a_connection_left_busy_by_a_cut_off_pipeline_counts_as_lost(new_db: NewDb) -> None:  # noqa: F811
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

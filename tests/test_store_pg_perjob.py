"""The PostgreSQL store's statements run at every job: the pick's and the attempt's small reads
through libpq, the runner's claim that returns the job's meta, and a lock's taking that reads a lost
race's holder in the same statement.

Against a real server started by the tests (loopback, a temp dir).
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from pgserver import NewDb, open_store
from test_store_pg import _dead_lock_holder

from aq_core.store import State

pytestmark = pytest.mark.requires("postgresql")


def _statements(store) -> list[str]:
    """Record every statement the store sends from now on, through psycopg or libpq."""
    sent: list[str] = []
    run = store.conn._run

    def via_libpq(conn, statement, args):
        sent.append(statement.sql.decode())
        return run(conn, statement, args)

    store.conn._run = via_libpq
    conn = store.conn._conn
    execute = conn.execute

    def via_psycopg(query, params=None, **kw):
        sent.append(str(query))
        return execute(query, params, **kw)

    conn.execute = via_psycopg
    return sent


def test_a_lock_lost_to_a_live_holder_is_one_statement_and_a_dead_holders_is_taken(
    new_db: NewDb,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = new_db()
    monkeypatch.setenv("AQ_HOST_ID", "here")
    with open_store(url, tmp_path / "a") as holder, open_store(url, tmp_path / "b") as other:
        lock = holder.coord.try_lock_to_claim("job:x")
        assert lock is not None
        sent = _statements(other)
        assert other.coord.try_lock_to_claim("job:x") is None, "held by a live process: refused"
        assert other.coord.try_lock("job:x") is None
        assert len(sent) == 2, sent  # each try: the taking and the holder's row in one statement
        lock.release()
        sent.clear()
        taken = other.coord.try_lock("job:x")
        assert taken is not None and len(sent) == 1
        with psycopg.connect(url) as db:
            assert db.execute("SELECT token FROM aq_locks WHERE name = 'job:x'").fetchone() == (taken.token,)
        taken.release()

    _dead_lock_holder(url, tmp_path, "here")  # holds "lock:shared" and was killed
    with open_store(url, tmp_path / "c") as store:
        sent = _statements(store)
        lock = store.coord.try_lock_to_claim("lock:shared")
        assert lock is not None, "the holder's pid is dead on this host: taken over at once"
        assert len(sent) == 2, sent  # the taking with the holder's row, then the taking over
        with psycopg.connect(url) as db:
            assert db.execute("SELECT token FROM aq_locks WHERE name = 'lock:shared'").fetchone() == (lock.token,)
        lock.release()


def test_the_reads_through_libpq_answer_as_psycopg_does(new_db: NewDb, tmp_path: Path) -> None:
    url = new_db()
    values = {"note": "line one\nline two ü €", "empty": "", "count": 3}
    with open_store(url, tmp_path / "a") as store:
        store.add("b", b"B", {"priority": 5})
        store.add("a", b"A", values)
        store.add("c", b"C", {})
        store.engines.append("eng", {"paused_until": 12.5, "why": "limit ü"})
        store.engines.append("eng", {"why": "again"})
        listing = store.list(State.INBOX)
        sent = _statements(store)
        meta = store.read_meta("a")
        token = store.coord.inbox_token()
        record = store.engines.read("eng")
        with store.engines.prefetched():  # with the waiting jobs' listing: test_store_pg_pick.py
            ahead = store.engines.read("eng")
        assert len(sent) == 3 and all("%s" not in q for q in sent), sent  # the prepared statements
        with psycopg.connect(url) as db:
            lines = db.execute("SELECT key, value FROM aq_meta WHERE job_id = 'a' ORDER BY seq").fetchall()
            rows = db.execute(
                "SELECT id, queued, op_token FROM aq_jobs WHERE state = 'inbox' ORDER BY priority DESC, queued, id"
            ).fetchall()
            counter = db.execute("SELECT value FROM aq_counters WHERE name = 'inbox'").fetchone()[0]
    assert meta.pairs == lines and meta.get("note") == "line one\nline two ü €" and meta.get("empty") == ""
    assert [(e.id, e.state, e.queued, e.version) for e in listing] == [(i, State.INBOX, q, t) for i, q, t in rows]
    assert [e.id for e in listing][0] == "b" and all(isinstance(e.queued, float) for e in listing)
    assert record.get("why") == "again" and record.number("paused_until") == 12.5
    assert ahead.pairs == record.pairs
    assert token == counter == 3
    with open_store(url, tmp_path / "b") as store:
        assert store.read_meta("nobody").pairs == [] and store.engines.read("none").pairs == []


def test_the_runners_claim_returns_the_jobs_meta_for_the_next_read_until_the_store_writes(
    new_db: NewDb,
    tmp_path: Path,
) -> None:
    url = new_db()
    with open_store(url, tmp_path / "a") as store:
        store.add("j", b"J", {"note": "line one\nü", "attempts": 2})
        store.add("k", b"K", {"note": "k"})
        store.add("bare", b"B", {})
        for job in ("j", "k", "bare"):
            assert store.coord.try_lock_to_claim("job:" + job) is not None
            assert store.claim(job)
        with psycopg.connect(url) as db:
            lines = {
                job: db.execute("SELECT key, value FROM aq_meta WHERE job_id = %s ORDER BY seq", (job,)).fetchall()
                for job in ("j", "k")
            }
        sent = _statements(store)
        assert store.read_meta("j").pairs == lines["j"] and store.read_meta("bare").pairs == []
        assert sent == [], "answered from the claims"
        assert store.read_meta("j").pairs == lines["j"] and len(sent) == 1, "once: the next read asks the database"
        store.append_meta("k", {"claimed": 1})  # the store's own write: the claim's answer is stale now
        assert store.read_meta("k").pairs == [*lines["k"], ("claimed", "1")]

"""The PostgreSQL store's common claim: one statement prepared on each connection, run through libpq,
that does not wait for the disk; the first append to the claimed job does, and applies only while
the claim is in the database.

Against a real server started by the tests (loopback, a temp dir; a crash-safe one of their own
for the tests that crash it).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pgserver import PgServer, dbname, open_store

from aq_core.errors import AqError
from aq_core.store import State

pytestmark = pytest.mark.requires("postgresql")


@pytest.fixture
def store(pg_store):  # the same store under the name these tests use
    return pg_store


def _row(pg_server: PgServer, url: str, job_id: str) -> tuple:
    return pg_server.sql(
        "SELECT state, lease_token, lease_host, lease_pid, lease_expires > now() FROM aq_jobs WHERE id = %s",
        (job_id,),
        dbname=dbname(url),
    )[0]


def test_a_claim_writes_the_claimers_lease_and_wins_once_across_stores(pg_pair, pg_server: PgServer) -> None:
    url, store, other = pg_pair
    store.add("j1", b"x", {})
    store.add("later", b"x", {"not_before": 4102444800})  # 2100: not yet
    store.add("child", b"x", {"after": "j1"})
    assert store.claim("j1") and not store.claim("j1") and not other.claim("j1")
    assert _row(pg_server, url, "j1") == ("building", store.coord.token, store.coord.host, store.coord.pid, True)
    assert store.coord.holding("j1") is True and other.coord.holding("j1") is None
    assert not other.claim("later") and not other.claim("child") and not other.claim("nope")
    assert store.move("j1", State.BUILDING, State.DONE)
    assert other.claim("child")
    assert other.locate("later") is State.INBOX


def test_a_claim_on_a_new_connection_prepares_its_statement_again(store, pg_server: PgServer) -> None:
    for job_id in ("a", "b", "c"):
        store.add(job_id, b"x", {})
    assert store.claim("a")
    first = store.conn._conn
    assert pg_server.terminate(dbname(store.url)) >= 1  # the server ends the store's session
    assert store.claim("b")  # a new connection, the statement prepared on it
    assert store.conn._conn is not first
    assert not store.claim("a") and store.claim("c")
    assert [e.id for e in store.list(State.BUILDING)] == ["a", "b", "c"]


def test_a_claim_whose_answer_was_lost_is_not_applied_twice_and_returns_its_win(
    pg_pair: tuple,
) -> None:
    _, store, other = pg_pair
    store.add("j", b"x", {})
    store.add("k", b"x", {})
    first, calls = store.conn.first, []

    def answer_lost(conn, statement, args):
        calls.append(args[0])
        result = first(conn, statement, args)
        if len(calls) == 1:
            conn.close()  # committed, and the connection gone before the answer came back
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return result

    store.conn.first = answer_lost
    assert store.claim("j")  # retried on a new connection: found committed by its own token
    assert calls == ["j"]  # the retry asked whether it was applied, and did not claim again
    assert store.coord.holding("j") is True
    assert not other.claim("j")
    assert store.claim("k") and calls == ["j", "k"]


def test_an_error_in_a_prepared_statement_is_raised_and_the_connection_still_serves(store) -> None:
    from aq_core.store_pg.connection import Prepared

    store.add("j", b"x", {})
    bad = Prepared("aq_test_bad", "SELECT 1 / $1::integer")
    with pytest.raises(psycopg.errors.DivisionByZero):
        store.conn.do(lambda conn, _: store.conn.first(conn, bad, ["0"]))
    assert store.conn.do(lambda conn, _: store.conn.first(conn, bad, ["1"])) == b"1"
    assert store.claim("j")


def test_a_job_id_with_a_nul_never_claims_the_job_it_starts_with(store) -> None:
    store.add("a", b"x", {})
    with pytest.raises(psycopg.DataError):  # libpq would have cut the id at the NUL: "a"
        store.claim("a\x00b")
    assert store.locate("a") is State.INBOX
    assert store.claim("a")


def test_a_job_another_claim_holds_is_skipped_not_waited_for(store) -> None:
    store.add("j", b"x", {})
    with psycopg.connect(store.conn.conninfo) as holder:  # a transaction: the row stays locked
        holder.execute("SELECT 1 FROM aq_jobs WHERE id = 'j' FOR UPDATE")
        assert not store.claim("j")
        holder.rollback()
    assert store.claim("j")


def test_a_claim_confirms_locks_whose_names_need_quoting_and_fails_when_one_is_gone(
    store,
    pg_server: PgServer,
) -> None:
    names = ['gpu "1", {a}', "back\\slash", "", "plain"]
    store.add("a", b"x", {})
    store.add("b", b"x", {})
    locks = [store.coord.try_lock_to_claim(name) for name in ["job:a", *names]]
    assert all(locks) and len(store.coord.unconfirmed()) == 5
    assert store.claim("a")
    assert store.coord.unconfirmed() == []  # the claim confirmed them (durable with its first append)
    for lock in locks:
        lock.release()
    locks = [store.coord.try_lock_to_claim(name) for name in ["job:b", *names]]
    pg_server.sql("DELETE FROM aq_locks WHERE name = %s", ("back\\slash",), dbname=dbname(store.url))
    assert not store.claim("b")  # one lock was lost: the claim does not apply
    assert store.locate("b") is State.INBOX


def test_a_claim_prepares_its_statement_again_when_the_session_forgot_it(store) -> None:
    store.add("a", b"x", {})
    store.add("b", b"x", {})
    assert store.claim("a")
    store.conn.do(lambda conn, _: conn.execute("DEALLOCATE ALL"))  # as DISCARD ALL or a pooler would
    assert store.claim("b") and not store.claim("a")
    assert [e.id for e in store.list(State.BUILDING)] == ["a", "b"]


def test_a_claim_the_database_lost_fails_its_first_append_and_every_write_after(
    pg_pair,
    pg_server: PgServer,
) -> None:
    url, store, other = pg_pair
    for job in ("lost", "kept"):
        store.add(job, b"x", {})
        assert store.claim(job)
    # A server crash loses a commit that did not wait for the disk: put the row back as it was.
    pg_server.sql(
        "UPDATE aq_jobs SET state = 'inbox', lease_token = NULL, lease_expires = NULL WHERE id = 'lost'",
        dbname=dbname(url),
    )
    assert other.claim("lost")  # taken again by another runner
    with pytest.raises(AqError, match="lost"):  # by this append, or by the heartbeat first
        store.append_meta("lost", {"claimed": 1}, durable=False)
    assert store.coord.holding("lost") is False
    with pytest.raises(AqError):
        store.append_meta("lost", {"attempts": 1})  # nothing more is recorded for it
    assert not store.move("lost", State.BUILDING, State.INBOX)  # nor is it moved from under the other
    assert store.read_meta("lost").pairs == [] and store.locate("lost") is State.BUILDING
    store.append_meta("kept", {"claimed": 1}, durable=False)
    store.append_meta("kept", {"host": "h"}, durable=False)
    assert store.read_meta("kept").pairs == [("claimed", "1"), ("host", "h")]
    assert store.coord.holding("kept") is True


@pytest.fixture
def crashing_server() -> Iterator[PgServer]:
    """A server of the test's own whose crash (``stop -m immediate``) loses what no commit flushed:
    commits that wait reach the operating system, and its WAL writer wakes only every 10 s."""
    server = PgServer(crash_safe=True).start()
    try:
        server.sql("ALTER SYSTEM SET wal_writer_delay = '10s'")
        server.sql("SELECT pg_reload_conf()")
        yield server
    finally:
        server.destroy()


def _one_job_store(server: PgServer, tmp_path: Path) -> tuple[str, str, Path, object]:
    """A new database on ``server`` (30 s lease), a job whose agent notes each start in ``starts``, and
    a store on it: (url, the job's text, starts, store)."""
    from aq_core.store_pg import init_schema

    url = server.url(server.create_database(), lease=30)
    init_schema(url)
    work, starts = tmp_path / "work", tmp_path / "starts"
    work.mkdir()
    job = f'---\nengine: command\ncwd: {work}\ncommand: ["sh", "-c", "echo started >> {starts}"]\n---\nGo.\n'
    return url, job, starts, open_store(url, tmp_path / "host")


def test_a_claim_lost_in_a_server_crash_never_starts_the_agent_and_the_job_runs_once(
    crashing_server: PgServer, tmp_path: Path
) -> None:
    from aq_core.journal import Journal
    from aq_core.runner import Runner

    server = crashing_server
    url, job, starts, store = _one_job_store(server, tmp_path)
    claimed, crashes, after = store.coord.claimed, [], []
    db = url.rsplit("/", 1)[1].split("?")[0]

    def crash_first(job_id: str, started: float) -> None:
        # The claim is committed, not flushed, and no other commit followed: the server crashes now.
        if not crashes:
            crashes.append(store.locate(job_id))
            server.stop("immediate")
            server.start()
            after.extend(server.sql("SELECT state FROM aq_jobs WHERE id = %s", (job_id,), dbname=db))
        claimed(job_id, started)

    store.coord.claimed = crash_first
    try:
        store.add("j", job.encode(), {})
        out = io.StringIO()
        runner = Runner(store, workers=1, once=True, journal=Journal(store, out=out))
        assert runner.run() == 0
        said = out.getvalue()
        assert crashes == [State.BUILDING]
        # Found by its first append, or by the heartbeat's renewal if that came first. On a loaded
        # machine another thread's durable commit (the runner's own heartbeat) can flush the claim
        # before the crash: it then survives, and the job simply runs.
        if after != [("building",)]:
            assert after == [("inbox",)] and ("its claim was lost" in said or "lost its lease" in said), (after, said)
        # Run once, by the second claim: the lost one started no agent and counted no attempt.
        assert starts.read_text() == "started\n"
        assert store.locate("j") is State.DONE
        meta = store.read_meta("j")
        assert meta.integer("attempts") == 1 and meta.get("result") == "ok", meta.pairs
    finally:
        store.close()


def test_the_database_away_as_the_agent_starts_is_waited_for_and_the_attempt_counted_once(
    crashing_server: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The soak's miscount: the database goes away between the agent's start and the attempt's
    record. The runner keeps the job (its lease holds), waits for the database, and records the
    attempt; it does not end the agent and leave the job to a recovery that cannot count it."""
    import threading

    from aq_core.attempt import Attempt
    from aq_core.journal import Journal
    from aq_core.runner import Runner

    server = crashing_server
    _, job, starts, store = _one_job_store(server, tmp_path)
    real_start, away = Attempt._start, []

    def start_then_lose_the_database(self: Attempt, *args: object):
        proc = real_start(self, *args)
        if not away:  # the agent runs: the database goes away before its attempt is recorded
            server.stop("fast")
            away.append(threading.Timer(8, server.start))
            away[0].start()
        return proc

    monkeypatch.setattr(Attempt, "_start", start_then_lose_the_database)
    try:
        store.add("j", job.encode(), {})
        out = io.StringIO()
        assert Runner(store, workers=1, once=True, journal=Journal(store, out=out)).run() == 0
        said = out.getvalue()
        assert "waiting for it to record the attempt's start" in said, said
        assert "internal error" not in said and "recovered" not in said, said
        assert starts.read_text() == "started\n"  # one start, never ended early, never run again
        assert store.locate("j") is State.DONE
        meta = store.read_meta("j")
        assert meta.integer("attempts") == 1 and meta.get("result") == "ok", meta.pairs
    finally:
        if away:
            away[0].join()
        store.close()

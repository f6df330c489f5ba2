"""The PostgreSQL store's pick in fewer statements: the waiting jobs listed in the same statement
as the engines' records, and the last look at one job before its claim on a plan the server keeps.

Against a real server started by the tests (loopback, a temp dir).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pgserver import NewDb, open_store

from aq_core.store import State

pytestmark = pytest.mark.requires("postgresql")


def _sent(store) -> list[str]:
    """Every statement the store's connection sends from now on, through libpq or a psycopg cursor."""
    sent: list[str] = []
    conn = store.conn._conn
    run, cursor = store.conn._run, conn.cursor
    store.conn._run = lambda db, statement, args: sent.append(statement.sql.decode()) or run(db, statement, args)

    class Counted:  # psycopg's ``Connection.execute`` runs through a cursor too
        def __init__(self, *args, **kw) -> None:
            self.made = cursor(*args, **kw)

        def execute(self, query, params=None, **kw):
            sent.append(str(query))
            return self.made.execute(query, params, **kw)

        def __getattr__(self, name: str):
            return getattr(self.made, name)

    conn.cursor = Counted
    return sent


@pytest.fixture
def stores(new_db: NewDb, tmp_path: Path) -> Iterator[tuple]:
    """(URL, a store, another host's store) on a new database."""
    url = new_db()
    with open_store(url, tmp_path / "a") as store, open_store(url, tmp_path / "b") as other:
        yield url, store, other


def _listing(url: str) -> list[tuple]:
    with psycopg.connect(url) as db:
        return sorted(db.execute("SELECT id, queued, op_token FROM aq_jobs WHERE state = 'inbox'").fetchall())


def test_a_pick_lists_the_waiting_jobs_with_the_engines_records_in_one_statement(stores: tuple) -> None:
    url, store, other = stores
    for n, job_id in enumerate(["a", "b", "c"]):
        store.add(job_id, b"x", {"priority": n})
    store.engines.append("eng", {"paused_until": 12.5})
    expected = _listing(url)
    sent = _sent(store)
    with store.engines.prefetched():
        record = store.engines.read("eng")
        names = store.engines.names()
    other.add("late", b"x", {})  # another host adds a job after the pick's statement
    listed = store.scan(State.INBOX)
    assert len(sent) == 1, sent  # the engines' records and the listing: one round trip
    assert record.number("paused_until") == 12.5 and names == ["eng"]
    assert sorted((e.id, e.queued, e.version) for e in listed) == expected
    assert all(e.state is State.INBOX and isinstance(e.queued, float) for e in listed)
    again = store.scan(State.INBOX)  # the listing serves one scan only: the next reads afresh
    assert len(sent) == 2 and sorted(e.id for e in again) == ["a", "b", "c", "late"]


def test_a_state_change_after_the_pick_lists_the_waiting_jobs_afresh(stores: tuple) -> None:
    _, store, _ = stores
    store.add("a", b"x", {})
    store.add("b", b"x", {})
    with store.engines.prefetched():
        pass
    assert store.claim("a")  # this thread moved a job: the listing made before it is stale
    assert [e.id for e in store.scan(State.INBOX)] == ["b"]
    with store.engines.prefetched():
        pass
    store.add("c", b"x", {})  # so is an add by this thread
    assert sorted(e.id for e in store.scan(State.INBOX)) == ["b", "c"]
    with store.engines.prefetched():
        pass
    store.append_meta("b", {"note": 1})
    assert sorted(e.id for e in store.scan(State.INBOX)) == ["b", "c"]


def test_another_threads_scan_is_not_served_from_this_threads_pick(stores: tuple) -> None:
    url, store, other = stores
    store.add("a", b"x", {})
    with store.engines.prefetched():
        pass
    other.add("b", b"x", {})
    seen: list[list[str]] = []
    thread = threading.Thread(target=lambda: seen.append(sorted(e.id for e in store.scan(State.INBOX))))
    thread.start()
    thread.join()
    assert seen == [["a", "b"]]  # read by that thread itself
    assert [e.id for e in store.scan(State.INBOX)] == ["a"]  # this thread's pick's listing


def test_an_empty_queue_and_no_engine_records_list_nothing(stores: tuple) -> None:
    _, store, _ = stores
    with store.engines.prefetched():
        assert store.engines.names() == [] and store.engines.read("eng").pairs == []
    assert store.scan(State.INBOX) == []
    assert store.scan(State.DONE) == []


def test_reading_one_job_ahead_answers_as_reading_many(stores: tuple) -> None:
    _, store, other = stores
    store.add("a", b"body of a", {"note": "line ü", "priority": 2})
    store.add("b", b"body of b", {})
    with other.prefetched(["a", "b"]):
        many = (other.read_meta("a").pairs, other.read_job("a", State.INBOX), other.entry("a", State.INBOX))
    sent = _sent(other)
    for _ in range(7):  # past psycopg's threshold for preparing the statement
        with other.prefetched(["a"]):
            one = (other.read_meta("a").pairs, other.read_job("a", State.INBOX), other.entry("a", State.INBOX))
            assert other.entry("a", State.BUILDING) is None
        assert one == many
    assert len(sent) == 7 and all("ANY" not in q for q in sent), sent  # one query each, for one id
    with other.prefetched(["nobody"], data=False):
        assert other.read_meta("nobody").pairs == [] and other.entry("nobody", State.INBOX) is None

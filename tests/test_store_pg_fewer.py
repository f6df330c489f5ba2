"""A job's statements on the PostgreSQL store, merged where they always go together: the runner's
claim with its first meta lines (one durable commit), the job's lock with the pick's last look at
the job, and the attempt's read of meta with its engine's records.

Against a real server started by the tests (loopback, a temp dir).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import psycopg
import pytest
from pgserver import dbname
from test_store_pg_pick import _sent
from test_store_pg_writes import _standby_wait, standby_server, standby_wait_seen

from aq_core.store import State

pytestmark = pytest.mark.requires("postgresql")

LINES = {"claimed": 1.5, "pid": 7, "host": "h1", "cwd": "/w", "isolation": "in_place"}


def _meta(url: str, job: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as db:
        return db.execute("SELECT key, value FROM aq_meta WHERE job_id = %s ORDER BY seq", (job,)).fetchall()


def test_the_runners_claim_writes_its_lines_in_one_statement_that_waits_for_the_disk(tmp_path: Path) -> None:
    """The claim, the lock it confirms and its lines reach the disk together, before it returns.

    A server whose durable commits wait for a synchronous standby that never connects tells it
    without timing: the claim hangs until the standby is given up (the lock's taking does not).
    """
    with standby_server(tmp_path) as (server, url, store):
        store.add("j", b"x", {"priority": 3})
        standby_wait_seen(server, store)
        sent = _sent(store)
        result: list = []

        def claim_it() -> None:
            lock = store.coord.try_lock_to_claim("job:j")  # does not wait for the disk
            result.append(lock)
            result.append(store.claim_noting("j", LINES))
            result.append(store.coord.unconfirmed())  # the claim confirmed it (this thread's)

        claim = threading.Thread(target=claim_it, daemon=True)
        claim.start()
        while not server.sql("SELECT 1 FROM pg_stat_activity WHERE wait_event = 'SyncRep'"):
            claim.join(0.05)  # the claim's commit waits for the standby
        assert len(result) == 1 and result[0] is not None  # the lock was taken; the claim waits
        _standby_wait(server, False)
        claim.join()
        lock = result[0]
        assert result[1:] == [True, []] and len(sent) == 2, sent  # the lock, then the claim with its lines
        db = dbname(url)
        row = server.sql("SELECT state, lease_token FROM aq_jobs WHERE id = 'j'", dbname=db)
        assert row == [("building", store.coord.token)]
        assert [k for k, _ in _meta(url, "j")] == ["priority", *LINES]
        assert dict(_meta(url, "j"))["host"] == "h1"
        assert server.sql("SELECT token FROM aq_locks WHERE name = 'job:j'", dbname=db) == [(lock.token,)]
        assert store.coord.holding("j") is True
        # The attempt's first read is the meta at the claim's instant, without its lines: no round trip.
        assert store.read_meta("j").pairs == [("priority", "3")] and len(sent) == 2
        store.append_meta("j", {"attempt": 1})  # the next append is an ordinary one: nothing to confirm
        assert [k for k, _ in _meta(url, "j")] == ["priority", *LINES, "attempt"]


def test_a_claim_that_does_not_apply_writes_no_lines(pg_pair: tuple) -> None:
    url, store, other = pg_pair
    for job in ("taken", "locked"):
        store.add(job, b"x", {})
    assert other.claim_noting("taken", LINES)
    assert not store.claim_noting("taken", {**LINES, "host": "h2"})  # another host took it first
    assert [v for k, v in _meta(url, "taken") if k == "host"] == ["h1"]
    # A lock taken to claim that the database lost (a server restart before it reached the disk):
    # the claim applies only while it is held, and writes nothing without it.
    lock = store.coord.try_lock_to_claim("job:locked")
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("DELETE FROM aq_locks WHERE name = 'job:locked'")
    assert not store.claim_noting("locked", LINES)
    assert _meta(url, "locked") == [] and store.locate("locked") is State.INBOX
    lock.release()
    assert store.claim_noting("locked", LINES) and store.locate("locked") is State.BUILDING


def test_the_lock_taken_to_claim_reads_the_job_for_the_picks_last_look(pg_pair: tuple) -> None:
    _, store, other = pg_pair
    store.add("j", b"body", {"priority": 2})
    sent = _sent(store)
    lock = store.coord.try_lock_to_claim("job:j")
    with store.prefetched(["j"], data=False):
        entry = store.entry("j", State.INBOX)
        meta = store.read_meta("j")
        version = store.coord.job_version("j", State.INBOX)
    assert len(sent) == 1, sent  # the lock and the job's row: one statement
    assert entry == other.entry("j", State.INBOX)
    assert meta.pairs == other.read_meta("j").pairs
    assert version == other.coord.job_version("j", State.INBOX)
    # Served once: the next look reads afresh, and sees another host's line.
    other.append_meta("j", {"cancel_requested": 1})
    with store.prefetched(["j"], data=False):
        assert store.read_meta("j").get("cancel_requested") == "1"
    assert len(sent) == 2
    lock.release()


def test_the_row_read_with_a_lock_is_not_served_after_a_write_or_the_locks_release(pg_pair: tuple) -> None:
    _, store, other = pg_pair
    store.add("j", b"body", {})
    lock = store.coord.try_lock_to_claim("job:j")
    store.append_meta("j", {"note": 1})  # this store wrote to the job: its row is read again
    sent = _sent(store)
    with store.prefetched(["j"], data=False):
        assert store.read_meta("j").get("note") == "1"
    assert len(sent) == 1
    lock.release()
    lock = store.coord.try_lock_to_claim("job:j")
    lock.release()  # let go: what was read with it is not served any more
    other.append_meta("j", {"later": 1})
    with store.prefetched(["j"], data=False):
        assert store.read_meta("j").get("later") == "1"
    # A lock held by another host reads nothing; the look reads for itself.
    held = other.coord.try_lock_to_claim("job:j")
    assert store.coord.try_lock_to_claim("job:j") is None
    with store.prefetched(["j"], data=False):
        assert store.entry("j", State.INBOX) is not None
    held.release()
    # A read that wants the job's file is not served from the lock's row (it has none).
    lock = store.coord.try_lock_to_claim("job:j")
    with store.prefetched(["j"], data=True):
        assert store.read_job("j", State.INBOX) == b"body"
    lock.release()


def test_the_attempts_read_of_meta_brings_its_engines_records_once(pg_pair: tuple) -> None:
    _, store, other = pg_pair
    store.add("j", b"x", {})
    store.coord.try_lock_to_claim("job:j")
    assert store.claim_noting("j", LINES)
    store.append_meta("j", {"attempt": 1, "engine": "eng"})
    other.engines.append("eng", {"limit_streak": 2})
    other.engines.append("other", {"limit_streak": 5})
    sent = _sent(store)
    meta = store.read_meta("j")  # after the agent: the job is this store's attempt
    record = store.engines.read("eng")
    assert len(sent) == 1, sent
    assert meta.pairs == other.read_meta("j").pairs
    assert record.pairs == other.engines.read("eng").pairs == [("limit_streak", "2")]
    assert store.engines.read("eng").pairs == record.pairs and len(sent) == 2  # once: then afresh
    assert store.engines.read("other").integer("limit_streak") == 5 and len(sent) == 3
    # A lock taken (``limits.pause_engine`` reads the records under it), or an append, reads afresh.
    store.read_meta("j")
    lock = store.coord.try_lock("engine:eng")
    other.engines.append("eng", {"limit_streak": 3})
    assert store.engines.read("eng").integer("limit_streak") == 3
    lock.release()
    store.read_meta("j")
    store.engines.append("eng", {"limit_streak": 0})
    assert store.engines.read("eng").integer("limit_streak") == 0


def test_a_job_not_held_by_the_store_reads_its_meta_alone(pg_pair: tuple) -> None:
    _, store, other = pg_pair
    other.add("j", b"x", {"engine": "eng"})
    other.engines.append("eng", {"limit_streak": 1})
    sent = _sent(store)
    assert store.read_meta("j").get("engine") == "eng"
    assert store.engines.read("eng").integer("limit_streak") == 1
    assert len(sent) == 2 and "aq_engine_meta" not in sent[0]


def test_the_claims_meta_survives_values_that_need_quoting(pg_pair: tuple) -> None:
    url, store, _ = pg_pair
    store.add("j", b"x", {})
    odd = {"cwd": 'a "quoted"\\ path, {with} braces', "host": "NULL", "empty": ""}
    assert store.claim_noting("j", odd)
    got = dict(_meta(url, "j"))
    assert got["cwd"] == odd["cwd"] and got["host"] == "NULL" and got["empty"] == ""
    assert json.loads(json.dumps(got))  # plain text values


def test_a_runner_filling_after_a_job_keeps_the_inbox_token_its_listing_read(pg_pair: tuple, tmp_path: Path) -> None:
    """The inbox's counter is read in the pick's statement: a runner that fills a worker a job just
    freed does not poll the counter first, nor while every worker is busy."""
    import io

    from test_store_pg_pick import _sent

    from aq_core.journal import Journal
    from aq_core.runner import Runner

    _, store, _ = pg_pair
    work = tmp_path / "work"
    work.mkdir()
    for n in range(6):
        store.add(f"j{n}", f"---\nengine: command\ncwd: {work}\ncommand: [sleep, '0.3']\n---\nGo.\n".encode(), {})
    sent = _sent(store)
    out = io.StringIO()
    assert Runner(store, workers=1, once=True, journal=Journal(store, out=out)).run() == 0
    assert [store.locate(f"j{n}") for n in range(6)] == [State.DONE] * 6, out.getvalue()
    polls = [s for s in sent if "FROM aq_counters WHERE name = 'inbox'" in s and "array_agg" not in s]
    picks = [s for s in sent if "array_agg(engine" in s]
    # The first look reads it (nothing listed yet); each later fill follows a job's end. A look that
    # reaps a job between its end and its wake-up reads it too (rare); reading it before every fill
    # would make seven.
    assert len(picks) >= 6 and len(polls) <= 3, (len(picks), len(polls))

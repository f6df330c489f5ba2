"""The runner's daily budget check keeps running totals: equal to reading every meta, reading only what changed."""

from __future__ import annotations

import time
from pathlib import Path

from aq_core import limits
from aq_core.store import State
from aq_core.store_fs import FsStore


class CountingStore(FsStore):
    """A filesystem store that counts meta reads (what the budget check costs)."""

    reads = 0

    def read_meta(self, job_id: str):  # type: ignore[no-untyped-def]
        self.reads += 1
        return super().read_meta(job_id)


def attempt(store: FsStore, job_id: str, n: int, engine: str, cost: float, finished: float) -> None:
    store.append_meta(job_id, {"attempt": n, "attempts": n, "engine": engine, "cost_usd": cost, "finished": finished})


def every_meta(store: FsStore, now: float) -> dict[str, float]:
    return limits.spend_since((store.read_meta(e.id) for e in store.list()), limits.day_start(now))


def test_running_totals_equal_a_full_read_and_read_only_changed_jobs(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "q")
    now = time.time()
    today, yesterday = limits.day_start(now) + 1, limits.day_start(now) - 3600
    for i in range(30):  # old history: finished before midnight
        store.add(f"old{i}", b"x", {})
        attempt(store, f"old{i}", 1, "claude", 1.0, yesterday)
        store.move(f"old{i}", State.INBOX, State.DONE)
    store.add("today", b"x", {})
    attempt(store, "today", 1, "codex", 0.25, today)
    store.move("today", State.INBOX, State.FAILED)
    store.add("retrying", b"x", {})
    attempt(store, "retrying", 1, "claude", 0.5, yesterday)
    attempt(store, "retrying", 2, "claude", 0.125, today)  # back in inbox/ for a third try

    daily = limits.DailySpend()
    assert daily.totals(store, now) == every_meta(store, now) == {"codex": 0.25, "claude": 0.125}
    store.reads = 0
    assert daily.totals(store, now) == {"codex": 0.25, "claude": 0.125}
    assert store.reads == 0, "nothing changed: no meta is read again"

    # Another runner finishes the waiting job's third attempt and moves it: only that job is re-read.
    store.claim("retrying")
    attempt(store, "retrying", 3, "gemini", 2.0, today)
    store.move("retrying", State.BUILDING, State.DONE)
    store.add("new", b"x", {})
    assert daily.totals(store, now) == every_meta(store, now) == {"codex": 0.25, "claude": 0.125, "gemini": 2.0}
    store.reads = 0
    daily.totals(store, now)
    assert store.reads == 0
    attempt(store, "new", 1, "claude", 0.5, today)  # a waiting job's meta grew: only it is read again
    assert daily.totals(store, now) == {"codex": 0.25, "claude": 0.625, "gemini": 2.0}
    assert store.reads == 1

    # A job moved back to the inbox by `aq retry` and a deleted job are followed too.
    store.move("today", State.FAILED, State.INBOX)
    (store.root / "done" / "retrying.md").unlink()
    assert daily.totals(store, now) == every_meta(store, now) == {"codex": 0.25, "claude": 0.5}

    # The next day only that day's attempts count, with no re-read of the history.
    tomorrow = now + 86400
    store.reads = 0
    assert daily.totals(store, tomorrow) == {}
    assert store.reads == 0
    assert every_meta(store, tomorrow) == {}

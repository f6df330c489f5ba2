"""Engine limits and budgets: pauses after a usage or rate limit, and daily cost budgets.

A pause is recorded twice, both append-only: in ``engines/<name>.meta`` (what runners read) and in
the meta of the job that hit the limit (``pause_engine``/``pause_until``), so it survives a restart
and can be rebuilt from job meta alone (``rebuild_engine_meta``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from aq_core.config import QueueConfig
from aq_core.meta import Meta, finite
from aq_core.store import Store

MAX_TRUSTED_RESET = 8 * 86400  # a printed reset further away than this is not believed


@dataclass(frozen=True)
class Pause:
    """An engine that starts no new job until ``until``."""

    engine: str
    until: float
    reason: str
    job: str | None
    since: float


def engine_state(meta: Meta) -> tuple[Pause | None, int]:
    """Return the engine's latest pause (None when lifted) and its streak of limits in a row."""
    pause: Pause | None = None
    fields: dict[str, str] = {}
    streak = 0
    for key, value in meta.pairs:
        if key == "paused":
            fields = {"paused": value}
        elif key in ("pause_until", "pause_reason", "pause_job", "pause_engine") and fields:
            fields[key] = value
            until = finite(fields.get("pause_until"))
            if until is not None and "pause_engine" in fields:
                pause = Pause(
                    fields["pause_engine"],
                    until,
                    fields.get("pause_reason", "usage_limit"),
                    fields.get("pause_job"),
                    finite(fields["paused"]) or 0.0,
                )
        elif key == "resumed":
            pause, fields = None, {}
        elif key == "limit_streak":
            streak = int(finite(value) or 0)
    return pause, streak


def active_pauses(store: Store, now: float | None = None) -> dict[str, Pause]:
    """Return the engines paused at ``now``, by name."""
    now = time.time() if now is None else now
    found = {}
    for name in store.engines.names():
        pause, _ = engine_state(store.engines.read(name))
        if pause is not None and pause.until > now:
            found[name] = pause
    return found


def probing_engines(store: Store, now: float | None = None) -> set[str]:
    """Engines whose pause ended but whose limit is not yet known to be over: one job at a time.

    A printed reset time is re-checked, not trusted blindly: until an attempt on the engine ends
    without a limit (``engine_succeeded``), every runner starts at most one job of it, under the
    ``probe:<engine>`` lock.
    """
    now = time.time() if now is None else now
    found = set()
    for name in store.engines.names():
        pause, streak = engine_state(store.engines.read(name))
        if streak and (pause is None or pause.until <= now):
            found.add(name)
    return found


def expired_pauses(store: Store, now: float | None = None) -> list[Pause]:
    """Return the pauses whose time has come but that were not marked as ended yet."""
    now = time.time() if now is None else now
    out = []
    for name in store.engines.names():
        pause, _ = engine_state(store.engines.read(name))
        if pause is not None and pause.until <= now:
            out.append(pause)
    return out


def hold_until(config: QueueConfig, reset_at: float | None, streak: int, now: float) -> float:
    """When a paused engine may be tried again: the printed reset plus a margin, else an exponential hold."""
    if reset_at is not None and now < reset_at + config.limit_margin <= now + MAX_TRUSTED_RESET:
        return reset_at + config.limit_margin
    hold = min(config.limit_hold * 2 ** max(0, streak - 1), config.limit_hold_max)
    return now + hold


def pause_engine(
    store: Store, config: QueueConfig, engine: str, reason: str, reset_at: float | None, job_id: str
) -> Pause:
    """Record that ``engine`` hit a limit; return the pause (the job's meta records it too)."""
    now = time.time()
    lock = store.coord.try_lock_wait("engine:" + engine)
    try:
        _, streak = engine_state(store.engines.read(engine))
        streak += 1
        until = round(hold_until(config, reset_at, streak, now), 3)
        store.engines.append(
            engine,
            {
                "paused": round(now, 3),
                "pause_engine": engine,
                "pause_reason": reason,
                "pause_job": job_id,
                "pause_until": until,
                "limit_streak": streak,
            },
        )
    finally:
        lock.release()
    store.append_meta(job_id, {"pause_engine": engine, "pause_until": until, "pause_reason": reason})
    return Pause(engine, until, reason, job_id, now)


def end_pause(store: Store, engine: str, by: str) -> Pause | None:
    """Mark the engine's pause as over (``by``: ``expired`` or ``aq resume``); None if it had none."""
    lock = store.coord.try_lock_wait("engine:" + engine)
    try:
        pause, _ = engine_state(store.engines.read(engine))
        if pause is None:
            return None
        store.engines.append(engine, {"resumed": round(time.time(), 3), "resumed_by": by})
    finally:
        lock.release()
    if pause.job and store.locate(pause.job) is not None:
        store.append_meta(pause.job, {"pause_lifted": round(time.time(), 3)})
    return pause


def engine_succeeded(store: Store, engine: str) -> None:
    """An attempt on ``engine`` ended without a limit: its next limit starts the hold from the minimum."""
    _, streak = engine_state(store.engines.read(engine))
    if streak:
        store.engines.append(engine, {"limit_streak": 0})


def rebuild_engine_meta(store: Store, metas: Iterable[tuple[str, Meta]]) -> int:
    """Re-create ``engines/<name>.meta`` pauses from job meta (when the engine files were lost)."""
    latest: dict[str, tuple[float, str, str]] = {}
    for job_id, meta in metas:
        engine, until = meta.get("pause_engine"), meta.number("pause_until")
        if engine and until and not meta.get("pause_lifted") and (engine not in latest or until > latest[engine][0]):
            latest[engine] = (until, meta.get("pause_reason") or "usage_limit", job_id)
    for engine, (until, reason, job_id) in latest.items():
        store.engines.append(
            engine,
            {
                "paused": round(time.time(), 3),
                "pause_engine": engine,
                "pause_reason": reason,
                "pause_job": job_id,
                "pause_until": until,
            },
        )
    return len(latest)


# -- budgets ------------------------------------------------------------------------------------


def day_start(now: float) -> float:
    """Local midnight of ``now``'s day (daily budgets reset then)."""
    moment = datetime.fromtimestamp(now).astimezone()
    return moment.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def spend_since(metas: Iterable[Meta], since: float) -> dict[str, float]:
    """Return the cost of attempts that finished at or after ``since``, by engine."""
    spend: dict[str, float] = {}
    for meta in metas:
        for run in meta.runs():
            finished, cost = finite(run.get("finished")), finite(run.get("cost_usd"))
            if finished is None or cost is None or finished < since:
                continue
            engine = run.get("engine") or "?"
            spend[engine] = spend.get(engine, 0.0) + cost
    return spend


def budget_block(config: QueueConfig, spend: dict[str, float], engine: str) -> str | None:
    """Return why no new job may start on ``engine`` today, or None when its budgets allow it."""
    total_budget = config.budgets.get("daily_usd")
    if total_budget is not None and sum(spend.values()) >= total_budget:
        return f"the daily budget of ${total_budget:.2f} is spent (${sum(spend.values()):.2f} today)"
    engine_budget = config.budgets.get(engine)
    if engine_budget is not None and spend.get(engine, 0.0) >= engine_budget:
        return f"{engine}'s daily budget of ${engine_budget:.2f} is spent (${spend.get(engine, 0.0):.2f} today)"
    return None


class DailySpend:
    """Today's spend by engine as running totals, for a runner's budget check every few seconds.

    Equal to ``spend_since`` over every job's meta, but a job's meta is read again only when the job
    changed: its state or file (its listing version) or, for a waiting or running job, its meta. A
    finished job is read once; one that spent nothing since midnight is remembered by a hash only.
    Nothing here is a record: a new runner starts from meta.
    """

    def __init__(self) -> None:
        self.since: float | None = None
        self._spent: dict[str, tuple[object, list[tuple[float, str, float]]]] = {}
        self._idle: set[int] = set()  # hash((id, key)) of jobs with no cost since ``since``

    def totals(self, store: Store, now: float) -> dict[str, float]:
        since = day_start(now)
        if since != self.since:  # a new day: only attempts finished since its midnight count
            self._spent = {job: (key, [r for r in runs if r[0] >= since]) for job, (key, runs) in self._spent.items()}
            self.since = since
        from aq_core.store import State

        finished = (State.DONE, State.FAILED)
        spent: dict[str, tuple[object, list[tuple[float, str, float]]]] = {}
        totals: dict[str, float] = {}
        for entry in store.list():
            job_id = entry.id
            if entry.state in finished and entry.version is not None:
                key: object = (entry.state, entry.version)
            else:  # a live job's meta grows without a move (and a store may not version its files)
                key = (entry.state, entry.version, store.coord.meta_version(job_id))
            if hash((job_id, key)) in self._idle:
                continue
            known = self._spent.get(job_id)
            if known is not None and known[0] == key:
                runs = known[1]
            else:
                runs = _costs_since(store.read_meta(job_id), since)
                if not runs and entry.state in finished:
                    self._idle.add(hash((job_id, key)))
                    continue
            spent[job_id] = (key, runs)
            for _, engine, cost in runs:
                totals[engine] = totals.get(engine, 0.0) + cost
        self._spent = spent
        return totals


def _costs_since(meta: Meta, since: float) -> list[tuple[float, str, float]]:
    """The (finished, engine, cost) of a job's attempts that finished at or after ``since`` (as ``spend_since``)."""
    out = []
    for run in meta.runs():
        finished, cost = finite(run.get("finished")), finite(run.get("cost_usd"))
        if finished is None or cost is None or finished < since:
            continue
        out.append((finished, run.get("engine") or "?", cost))
    return out

"""Orphan recovery: jobs left in ``building/`` by a runner that died are put back, exactly once."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from aq_core import plugins
from aq_core.journal import Journal
from aq_core.meta import Meta
from aq_core.procs import kill_orphan_group
from aq_core.store import State, Store, host_id

MAX_ORPHANS = 3


def _attempt_started_since_claim(meta: Meta) -> bool:
    """True when the engine was started after the last claim (an attempt was made)."""
    started = False
    for key, _ in meta.pairs:
        if key == "claimed":
            started = False
        elif key == "attempt":
            started = True
    return started


def _decision_since_attempt(meta: Meta) -> str | None:
    """The state the runner decided on for its last attempt, if it got that far before dying."""
    decision = None
    for key, value in meta.pairs:
        if key in ("claimed", "attempt"):
            decision = None
        elif key == "decision":
            decision = value
    return decision


OnFinished = Callable[[str, State], None]


def recover(store: Store, journal: Journal, on_finished: OnFinished | None = None) -> list[str]:
    """Recover every orphan in ``building/``; return the ids recovered. Safe to run concurrently.

    ``on_finished(job_id, state)`` is called for a job recovery ends in ``done/`` or ``failed/``.
    """
    recovered = []
    for entry in store.list(State.BUILDING):
        if recover_one(store, journal, entry.id, on_finished):
            recovered.append(entry.id)
    return recovered


def recover_one(store: Store, journal: Journal, job_id: str, on_finished: OnFinished | None = None) -> bool:
    # The runner holds the job's lock for the whole attempt: if we can take it, no live runner has
    # the job. It also makes two recoveries of the same job impossible at once.
    lock = store.coord.try_lock("job:" + job_id)
    if lock is None:
        return False
    try:
        if store.locate(job_id) is not State.BUILDING:
            return False
        meta = store.read_meta(job_id)
        if store.coord.owner_alive(job_id, meta):
            # Its runner lives (or may: on another host, before its lease ran out): never take it.
            return False
        final = _recover(store, journal, job_id, meta, meta.integer("pid"))
    finally:
        lock.release()
    if final is not None and final is not State.INBOX and on_finished is not None:
        on_finished(job_id, final)
    return final is not None


def _recover(store: Store, journal: Journal, job_id: str, meta: Meta, pid: int) -> State | None:
    """Recover one orphan (its job lock held); return the state it was moved to."""
    say = journal.for_job(job_id)
    decision = _decision_since_attempt(meta)
    if decision in ("done", "failed", "inbox"):
        # The runner recorded the outcome and died before the rename: finish its move.
        store.move(job_id, State.BUILDING, State(decision))
        say(f"recovered: runner (pid {pid}) died after finishing the attempt; moved to {decision}/")
        return State(decision)
    attempted = _attempt_started_since_claim(meta)
    killed = 0
    # Processes and work trees are only this host's to touch: a lease that ran out on another host
    # (a shared store) names a pid and a path there, not here.
    here = meta.get("host", host_id()) == host_id()
    if not attempted and here:
        # The runner may have died between starting the engine and recording it: the process
        # writes a started marker itself, and a live one still carries its job in its environment.
        from aq_core.attempt import started_marker
        from aq_core.procs import find_by_env

        number = meta.integer("attempts") + 1
        marker = started_marker(store, job_id, number)
        began = marker.exists() and marker.stat().st_size > 0
        strays = find_by_env({"AQ_JOB_ID": job_id, "AQ_ROOT": str(store.files.root)})
        if began or strays:
            agent = strays[0] if strays else _marker_pid(marker)
            store.append_meta(
                job_id, {"attempt": number, "attempts": number, "agent_pid": agent, "note": "started, unrecorded"}
            )
            meta = store.read_meta(job_id)
            attempted = True
            for stray in strays:
                killed += kill_orphan_group(os.getpgid(stray) if _exists(stray) else stray, None)
    agent_pid = meta.integer("agent_pid")
    if attempted and agent_pid and not killed and here:
        killed = kill_orphan_group(agent_pid, meta.number("agent_pidstart"))
    commit: dict[str, str] = {}
    workdir = meta.get("workdir") or meta.get("cwd")
    if attempted and workdir and here:
        try:
            commit = plugins.checkpoint(
                "commit",
                job_id,
                Path(workdir),
                "orphaned",
                meta.last,
                meta.get("isolation") or "inplace",
                _protected(store),
                say,
            )
        except Exception as exc:
            say(f"wip: checkpoint failed during recovery: {type(exc).__name__}: {exc}")
    now = round(time.time(), 3)
    if not attempted:
        store.append_meta(job_id, {"recovered": now, "decision": "inbox"})
        store.move(job_id, State.BUILDING, State.INBOX)
        say(f"recovered: runner (pid {pid}) died before starting the engine; back to inbox/ (no attempt counted)")
        return State.INBOX
    orphans = meta.integer("orphans") + 1
    attempt = meta.integer("attempts")
    base = {**commit, "recovered": now, "result": "orphaned", "orphans": orphans, "finished": now}
    if orphans >= MAX_ORPHANS:
        store.append_meta(
            job_id, {**base, "result": "retries_exhausted", "last_failure": "orphaned", "decision": "failed"}
        )
        store.move(job_id, State.BUILDING, State.FAILED)
        say(f"recovered: orphaned {orphans} times in a row (runner pid {pid} gone); failed as retries_exhausted")
        return State.FAILED
    store.append_meta(job_id, {**base, "decision": "inbox"})
    store.move(job_id, State.BUILDING, State.INBOX)
    extra = f", ended {killed} leftover agent process(es)" if killed else ""
    say(f"recovered orphan: runner pid {pid} gone; attempt {attempt} counted{extra}; back to inbox/")
    return State.INBOX


def _marker_pid(marker: Path) -> int | None:
    try:
        return int(marker.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _exists(pid: int) -> bool:
    try:
        os.getpgid(pid)
    except ProcessLookupError:
        return False
    return True


def _protected(store: Store) -> tuple[str, ...]:
    try:
        return store.files.config().protected_branches
    except Exception:
        return ("main", "master")

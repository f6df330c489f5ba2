"""Orphan recovery: jobs left in ``building/`` by a runner that died are put back, exactly once.

A job whose runner wrote its decision but died before the move has that move finished
(``transitions.replay``); one whose attempt was cut short goes where ``decisions.after_attempt``
says for an ``orphaned`` attempt (``transitions.recover_orphan``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from aq_core import decisions, plugins, transitions
from aq_core.checkpoint import CheckpointContext
from aq_core.decisions import MAX_ORPHANS
from aq_core.journal import Journal
from aq_core.meta import Meta
from aq_core.procs import kill_orphan_group
from aq_core.store import State, Store, host_id
from aq_core.supervise import started

__all__ = ["MAX_ORPHANS", "recover", "recover_one", "waiting_for_locks"]


def _attempt_started_since_claim(meta: Meta) -> bool:
    """True when the engine was started after the last claim (an attempt was made)."""
    started = False
    for key, _ in meta.pairs:
        if key == "claimed":
            started = False
        elif key == "attempt":
            started = True
    return started


OnFinished = Callable[[str, State], None]


def recover(
    store: Store, journal: Journal, on_finished: OnFinished | None = None, locked: list[str] | None = None
) -> list[str]:
    """Recover every orphan in ``building/``; return the ids recovered. Safe to run concurrently.

    ``on_finished(job_id, state)`` (the ``job_finished`` notification) is called for a job recovery
    ends in ``done/`` or ``failed/``; its row is journalled for the rows cache either way.
    ``locked`` collects the jobs whose lock another process held (``waiting_for_locks``).
    """
    recovered = []
    for entry in store.list(State.BUILDING):
        outcome = _recover_locked(store, journal, entry.id, on_finished)
        if outcome:
            recovered.append(entry.id)
        elif outcome is None and locked is not None:
            locked.append(entry.id)
    return recovered


def recover_one(store: Store, journal: Journal, job_id: str, on_finished: OnFinished | None = None) -> bool:
    """Recover ``job_id`` if it is an orphan whose lock is free; True when it was recovered."""
    return bool(_recover_locked(store, journal, job_id, on_finished))


def waiting_for_locks(store: Store, journal: Journal, locked: list[str], told: set[str]) -> bool:
    """Whether a job of ``locked`` is an orphan this host would recover once its lock is free.

    On a shared store only a job's own host can tell its runner dead, and a process of another
    host may hold the job's lock: a recovery there that left the job to this host, or one that
    died holding it (its lock is free when its lease runs out). ``aq run --once`` waits for such a
    job rather than leave it in ``building``; each is journalled once (``told``).
    """
    # Only a store shared by hosts has such orphans: on one host a lock is free when its holder
    # dies, and a live holder recovers the job itself.
    orphans_locked = getattr(store.coord, "orphans_locked", None)
    left = orphans_locked(locked) if orphans_locked is not None else {}
    for job_id, holder in left.items():
        if holder is not None and job_id not in told:  # None: let go since the pass, taken at the next
            told.add(job_id)
            journal.say(job_id, f"recovery: an orphan to recover here; its lock is held by {holder}: waiting for it")
    return bool(left)


def _recover_locked(store: Store, journal: Journal, job_id: str, on_finished: OnFinished | None) -> bool | None:
    """Recover ``job_id`` if it is an orphan: True when recovered; None when its lock was held."""
    # The runner holds the job's lock for the whole attempt: if we can take it, no live runner has
    # the job. It also makes two recoveries of the same job impossible at once.
    lock = store.coord.try_lock("job:" + job_id)
    if lock is None:
        return None
    try:
        if store.locate(job_id) is not State.BUILDING:
            return False
        meta = store.read_meta(job_id)
        if store.coord.owner_alive(job_id, meta):
            # Its runner lives (or may: on another host, before its lease ran out): never take it.
            return False
        final = _recover(store, journal, job_id, meta, meta.integer("pid"), on_finished)
    finally:
        lock.release()
    return final is not None


def _recover(
    store: Store, journal: Journal, job_id: str, meta: Meta, pid: int, notify: OnFinished | None
) -> State | None:
    """Recover one orphan (its job lock held); return the state it was moved to."""
    say = journal.for_job(job_id)
    decided = transitions.pending(meta)
    if decided is not None and decided is not State.BUILDING:
        # The runner recorded the outcome and died before the rename: finish its move.
        said = f"recovered: runner (pid {pid}) died after finishing the attempt; moved to {decided.value}/"
        moved = transitions.replay(store, journal, job_id, State.BUILDING, decided, said, notify)
        return decided if moved else None
    attempted = _attempt_started_since_claim(meta)
    killed = 0
    # Processes and work trees are only this host's to touch: a lease that ran out on another host
    # (a shared store) names a pid and a path there, not here.
    here = meta.get("host", host_id()) == host_id()
    if not attempted and here:
        # The runner may have died between starting the engine and recording it: the process
        # leaves evidence of its start itself (``supervise.started``), and a live one still carries
        # its job in its environment. An agent that already exited may have left no pid to record.
        from aq_core.procs import find_by_env

        number = meta.integer("attempts") + 1
        began, pids = started(store, job_id, number)
        strays = find_by_env({"AQ_JOB_ID": job_id, "AQ_ROOT": str(store.files.root)})
        if began or strays:
            # No pid known: an empty one, so that an earlier attempt's is not taken for this one's.
            agent = strays[0] if strays else (pids[0] if pids else "")
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
            ctx = CheckpointContext(
                job_id=job_id,
                workdir=Path(workdir),
                result="orphaned",
                meta=meta.last,
                isolation=meta.get("isolation") or "inplace",
                protected=_protected(store),
                log=say,
            )
            commit = plugins.checkpoint("commit", ctx, settings=_plugin_settings(store))
        except Exception as exc:
            say(f"wip: checkpoint failed during recovery: {type(exc).__name__}: {exc}")
    if not attempted:
        said = f"recovered: runner (pid {pid}) died before starting the engine; back to inbox/ (no attempt counted)"
        return State.INBOX if transitions.release_unstarted(store, journal, job_id, said) else None
    now = round(time.time(), 3)
    orphans = meta.integer("orphans") + 1
    attempt = meta.integer("attempts")
    decision = decisions.after_attempt(decisions.AttemptEnd(cls="orphaned", now=now, orphans=orphans))
    base = {**commit, "recovered": now, "orphans": orphans, "finished": now}
    if decision.state == "failed":
        said = f"recovered: orphaned {orphans} times in a row (runner pid {pid} gone); failed as retries_exhausted"
    else:
        extra = f", ended {killed} leftover agent process(es)" if killed else ""
        said = f"recovered orphan: runner pid {pid} gone; attempt {attempt} counted{extra}; back to inbox/"
    return transitions.recover_orphan(store, journal, job_id, decision, base, said, notify)


def _exists(pid: int) -> bool:
    try:
        os.getpgid(pid)
    except ProcessLookupError:
        return False
    return True


def _plugin_settings(store: Store) -> dict:
    try:
        return store.files.config().plugins
    except Exception:
        return {}


def _protected(store: Store) -> tuple[str, ...]:
    try:
        return store.files.config().protected_branches
    except Exception:
        return ("main", "master")

"""Every move of a job between the queue's folders, and only here.

Each move is one named function that does the same four steps: append the ``decision=<state>``
meta line (with the meta saying why), rename the job file, say it in the journal, and, for a job
that reached ``done/`` or ``failed/``, journal its row for the rows cache and tell the notifiers.
A move cut short after its decision (the process killed between the meta line and the rename) is
finished by ``replay``: recovery does it for ``building/``, the runner for ``inbox/``.

What a decision *is* (retry, pause, fail) is decided in ``aq_core.decisions``; this module applies it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from aq_core.store import State, Store

if TYPE_CHECKING:
    from aq_core.decisions import Decision
    from aq_core.journal import Journal
    from aq_core.meta import Meta

#: Told when a job reached ``done/`` or ``failed/`` (sends ``job_finished``); None in tests and tools.
Notify = Callable[[str, State], None]
FINISHED = (State.DONE, State.FAILED)


def _now() -> float:
    return round(time.time(), 3)


def arrived(store: Store, job_id: str, state: State, notify: Notify | None) -> None:
    """After a job reached ``state``: journal its row for the rows cache (and keep it in meta, see
    ``row_line``) and notify (finished only)."""
    if state not in FINISHED:
        return
    from aq_core.records import note_finished
    from aq_core.status import job_row

    with contextlib.suppress(Exception):  # a cache entry is a convenience, never a reason to fail
        meta = store.read_meta(job_id)
        note_finished(store, job_id, state, job_row(job_id, state, meta), meta.size)
    if notify is not None:
        notify(job_id, state)


def _move(
    store: Store,
    journal: Journal,
    job_id: str,
    src: State,
    dst: State,
    meta: Mapping[str, object] | None,
    said: str | None,
    notify: Notify | None = None,
    then: Callable[[State], None] | None = None,
    scoped: bool = True,
) -> bool:
    """Decide (meta first, so recovery can finish the move), move, journal, notify."""
    if meta is not None:
        origin = {"decided_in": src.value} if src is not State.BUILDING else {}
        moved = store.move_deciding(job_id, src, dst, {**meta, **origin, "decision": dst.value})
    else:
        moved = store.move(job_id, src, dst)
    if not moved:
        if scoped:
            journal.say(job_id, f"was no longer in {src.value}/ (moved by someone else); leaving it where it is")
        return False
    if said:
        journal.say(job_id if scoped else None, said)
    if then is not None:
        then(dst)
    arrived(store, job_id, dst, notify)
    return True


# -- into building/ -----------------------------------------------------------------------------


def claim(store: Store, job_id: str, lines: Mapping[str, object] | None = None) -> bool:
    """Take a waiting job for this runner (``inbox/`` to ``building/``); False when another took it.

    No decision line: the claim is the one move recovery undoes rather than finishes. ``lines`` (the
    runner's ``claimed`` lines) go with the claim on a store that can write them in the claim's own
    statement and durable commit (``claim_noting``); on any other store ``note_claim`` writes them.
    """
    noting = getattr(store, "claim_noting", None)
    if lines and noting is not None:
        return noting(job_id, lines)
    return store.claim(job_id)


def note_claim(store: Store, job_id: str, lines: Mapping[str, object]) -> None:
    """Write a claim's ``lines`` where ``claim`` could not write them with the claim itself.

    The attempt's first write, off the runner's main loop and before anything acts on the claim: a
    store whose claim did not wait for the disk makes it durable here, or raises if it was lost. Not
    flushed on its own: the attempt's record is, and an fsync covers every earlier byte of the file.
    Lost to a power cut with it, this line changes nothing recovery decides.
    """
    if getattr(store, "claim_noting", None) is None:
        store.append_meta(job_id, lines, durable=False)


# -- out of building/ ---------------------------------------------------------------------------


def finish(
    store: Store,
    journal: Journal,
    job_id: str,
    state: State,
    meta: Mapping[str, object],
    note: str,
    notify: Notify | None = None,
    then: Callable[[State], None] | None = None,
) -> bool:
    """An attempt is over for good: ``building/`` to ``done/`` or ``failed/``.

    ``meta`` holds the attempt's figures and the result; ``then(state)`` runs after the move and
    before the row is journalled (the checkpoint's ``finish`` stage).
    """
    assert state in FINISHED, state
    return _move(store, journal, job_id, State.BUILDING, state, meta, f"{state.value}: {note}", notify, then)


def requeue(store: Store, journal: Journal, job_id: str, meta: Mapping[str, object], note: str) -> bool:
    """Back to the queue after an attempt: ``building/`` to ``inbox/``.

    ``meta`` may hold ``next_eligible`` (a retry's backoff); a limit's pause is on the engine.
    """
    return _move(store, journal, job_id, State.BUILDING, State.INBOX, meta, f"inbox: {note}")


def apply(
    store: Store,
    journal: Journal,
    job_id: str,
    decision: Decision,
    meta: Mapping[str, object],
    note: str,
    notify: Notify | None = None,
    then: Callable[[State], None] | None = None,
) -> State | None:
    """Move the job where ``decision`` says (``finish`` or ``requeue``); return its state, or None
    when it was no longer in ``building/``."""
    full = {**meta, **decision.meta}
    state = State(decision.state)
    if state is State.INBOX:
        moved = requeue(store, journal, job_id, full, note)
    else:
        moved = finish(store, journal, job_id, state, full, note, notify, then)
    return state if moved else None


def stop(store: Store, journal: Journal, job_id: str, meta: Mapping[str, object], note: str) -> bool:
    """The runner is stopping: its attempt goes back to ``inbox/`` without using a retry."""
    return requeue(store, journal, job_id, {**meta, "result": "stopped"}, note)


def fail_unstarted(
    store: Store, journal: Journal, job_id: str, result: str, reason: str, notify: Notify | None = None
) -> bool:
    """A claimed job whose engine never started fails (no attempt counted): cancelled before it
    started, a missing cwd, a spent budget, no sandbox for a ``sandbox: true`` job, an engine that
    cannot start, a work tree not prepared."""
    meta = {"result": result, "error": reason, "finished": _now()}
    return finish(store, journal, job_id, State.FAILED, meta, f"{result}: {reason}", notify)


def recover_orphan(
    store: Store,
    journal: Journal,
    job_id: str,
    decision: Decision,
    meta: Mapping[str, object],
    said: str,
    notify: Notify | None = None,
) -> State | None:
    """The runner of an attempt died: back to ``inbox/`` (the attempt counted) or, orphaned too
    often, to ``failed/``, as ``decision`` says; ``said`` is the journal line."""
    state = State(decision.state)
    moved = _move(store, journal, job_id, State.BUILDING, state, {**meta, **decision.meta}, said, notify)
    return state if moved else None


def release_unstarted(store: Store, journal: Journal, job_id: str, said: str) -> bool:
    """The runner died before starting the engine: back to ``inbox/``, no attempt counted."""
    return _move(store, journal, job_id, State.BUILDING, State.INBOX, {"recovered": _now()}, said)


def replay(
    store: Store, journal: Journal, job_id: str, src: State, dst: State, said: str, notify: Notify | None = None
) -> bool:
    """Finish a move whose decision was written but whose rename was not (its process was killed)."""
    return _move(store, journal, job_id, src, dst, None, said, notify)


def pending(meta: Meta, src: State = State.BUILDING) -> State | None:
    """The state the job's last decision names, if it was decided in ``src`` and since the job's last
    claim, attempt or ``aq retry`` (None: none). ``requeued`` counts too: ``aq retry`` of earlier
    versions wrote no decision of its own. A move out of ``inbox/`` marks its decision
    ``decided_in=inbox``: a job file dropped again after its job finished is not mistaken for one."""
    decision: str | None = None
    origin: str | None = None
    where = None
    for key, value in meta.pairs:
        if key in ("claimed", "attempt", "requeued"):
            decision = where = origin = None
        elif key == "decided_in":
            where = value
        elif key == "decision":
            decision, origin, where = value, where, None
    if decision is None or (origin or State.BUILDING.value) != src.value:
        return None
    try:
        return State(decision)
    except ValueError:
        return None


# -- out of inbox/ ------------------------------------------------------------------------------


def invalid(store: Store, journal: Journal, job_id: str, reason: str, notify: Notify | None = None) -> bool:
    """A job file that can never run here fails for good, kept in ``failed/`` with the reason."""
    if not claim(store, job_id):
        return False
    from aq_core.errors import shown

    meta = {"result": "invalid", "error": reason, "finished": _now(), "decision": State.FAILED.value}
    with contextlib.suppress(OSError):  # a name no meta file can have still moves to failed/: that says invalid
        store.append_meta(job_id, meta)
    said = f"{shown(job_id)}: invalid, moved to failed/: {reason}"
    return _move(store, journal, job_id, State.BUILDING, State.FAILED, None, said, notify, scoped=False)


def cancel(store: Store, journal: Journal, job_id: str, notify: Notify | None = None) -> bool:
    """``aq cancel`` of a waiting job: ``inbox/`` to ``failed/`` as cancelled (the caller holds its lock)."""
    meta = {"cancel_requested": 1, "result": "cancelled", "finished": _now()}
    return _move(
        store, journal, job_id, State.INBOX, State.FAILED, meta, "cancelled while waiting; moved to failed/", notify
    )


def dependency_failed(
    store: Store, journal: Journal, job_id: str, dependency: str, notify: Notify | None = None
) -> bool:
    """A job one of whose dependencies failed fails too, without an attempt (the caller holds its lock)."""
    meta = {"result": "dependency_failed", "failed_dependency": dependency, "finished": _now()}
    said = f"failed: its dependency {dependency} failed (no attempt made)"
    return _move(store, journal, job_id, State.INBOX, State.FAILED, meta, said, notify)


# -- out of failed/ -----------------------------------------------------------------------------


def retry(store: Store, journal: Journal, job_id: str) -> bool:
    """``aq retry``: a failed job goes back to ``inbox/`` with its retries and orphan count reset."""
    meta = {
        "requeued": _now(),
        "retries": 0,
        "orphans": 0,
        "next_eligible": 0,
        "cancel_requested": 0,
        "result": "queued",
    }
    return _move(store, journal, job_id, State.FAILED, State.INBOX, meta, "retried: back in inbox/")

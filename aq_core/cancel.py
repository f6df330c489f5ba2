"""``aq cancel``: a waiting job fails as cancelled; a running one is stopped first (and checkpointed)."""

from __future__ import annotations

import signal
import time

from aq_core import transitions
from aq_core.errors import AqError, UsageError
from aq_core.journal import Journal
from aq_core.procs import alive, signal_group
from aq_core.store import State, Store


def cancel(store: Store, job_id: str, wait: float = 30.0, on_finished: transitions.Notify | None = None) -> str:
    """Cancel ``job_id``; return one line saying what happened."""
    state = store.locate(job_id)
    if state is None:
        raise UsageError(f"no job {job_id!r} in {store.describe()}")
    if state in (State.DONE, State.FAILED):
        raise AqError(f"job {job_id!r} already finished (in {state.value}/): nothing to cancel")
    journal = Journal(store)
    lock = store.coord.try_lock("job:" + job_id)
    if lock is not None:
        # Nobody runs it: waiting in inbox/, or orphaned in building/.
        try:
            state = store.locate(job_id)
            if state is State.BUILDING:
                from aq_core.recovery import recover_one

                lock.release()
                lock = None
                recover_one(store, journal, job_id, on_finished)
                return cancel(store, job_id, wait, on_finished)
            if state is not State.INBOX:
                raise AqError(f"job {job_id!r} moved to {state.value if state else 'nowhere'}/ meanwhile")
            if not transitions.cancel(store, journal, job_id, notify=on_finished):
                raise AqError(f"job {job_id!r} was taken by a runner meanwhile; run aq cancel again")
            return f"{job_id}: cancelled (was waiting)"
        finally:
            if lock is not None:
                lock.release()
    # A runner holds it: ask, and end its agent's process group so the runner sees it at once.
    store.append_meta(job_id, {"cancel_requested": 1})
    meta = store.read_meta(job_id)
    agent_pid, agent_start = meta.integer("agent_pid"), meta.number("agent_pidstart")
    if agent_pid and alive(agent_pid, agent_start):
        signal_group(agent_pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if store.locate(job_id) is not State.BUILDING:
            break
        time.sleep(0.05)
    final = store.locate(job_id)
    if final is State.BUILDING:
        raise AqError(f"job {job_id!r}: cancel requested, the runner has not finished it yet")
    result = store.read_meta(job_id).get("result")
    return f"{job_id}: cancelled (was running; now in {final.value if final else '?'}/, result {result})"

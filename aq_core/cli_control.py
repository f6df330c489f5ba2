"""The ``aq`` commands that change the queue's course: stop, recover, retry, cancel, resume."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from aq_core.errors import AqError, UsageError


def _store(args: argparse.Namespace):
    from aq_core.store_open import open_store

    return open_store(args.root, url=args.store)


def cmd_recover(args: argparse.Namespace) -> int:
    from aq_core.journal import Journal
    from aq_core.notifications import command_notifier
    from aq_core.recovery import recover

    store = _store(args)
    journal = Journal(store)
    with command_notifier(store, journal) as on_finished:
        recovered = recover(store, journal, on_finished=on_finished)
    print(f"recovered {len(recovered)} orphan job(s)" + (": " + ", ".join(recovered) if recovered else ""))
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    # This host's runners; with a store shared by many hosts, every host's.
    asked, left = _store(args).coord.request_stop(args.wait)
    if left:
        raise AqError(f"runner(s) still running after {args.wait:g}s: {'; '.join(left)}")
    print(f"stopped {len(asked)} runner(s): {'; '.join(asked)}" if asked else "no runner is running")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from aq_core import limits
    from aq_core.journal import Journal
    from aq_core.notifications import Notifier

    store = _store(args)
    pause = limits.end_pause(store, args.engine, "aq resume")
    if pause is None:
        known = ", ".join(store.engines.names()) or "none"
        raise AqError(f"engine {args.engine!r} is not paused (engines with a record: {known})")
    store.coord.poke()  # a runner waiting for the pause to end looks again now
    journal = Journal(store)
    journal.say(None, f"engine {args.engine}: pause lifted by aq resume")
    notifier = Notifier(store.files.config(), lambda line: journal.say(None, line))
    notifier.send(
        "engine_resumed",
        {"engine": args.engine, "until": pause.until, "reason": pause.reason, "job": pause.job, "by": "aq resume"},
    )
    notifier.drain()
    notifier.close()
    from aq_core.reset_time import format_reset

    print(f"{args.engine}: resumed (was paused until {format_reset(pause.until)}, {pause.reason})")
    return 0


# -- retry / cancel ------------------------------------------------------------------------------


def cmd_retry(args: argparse.Namespace) -> int:
    import io

    from aq_core.journal import Journal
    from aq_core.store import State

    store = _store(args)
    state = store.locate(args.job)
    if state is None:
        raise UsageError(f"no job {args.job!r} in {store.describe()}")
    if state is not State.FAILED:
        raise AqError(f"job {args.job!r} is in {state.value}/: only a failed job can be retried")
    journal = Journal(store, out=io.StringIO())  # lines go to the jobs' own logs
    _retry_one(store, journal, args.job)
    print(f"{args.job}: back in inbox/")
    # The jobs that failed only because this one did come back with it, transitively.
    for job_id in failed_dependants(store, args.job):
        try:
            _retry_one(store, journal, job_id)
        except AqError as exc:
            print(f"aq: {exc}", file=sys.stderr)
            continue
        print(f"{job_id}: back in inbox/ (it failed because {args.job} did)")
    store.coord.poke()  # an idle runner starts it now
    return 0


def _retry_one(store: Any, journal: Any, job_id: str) -> None:
    from aq_core import transitions

    lock = store.coord.try_lock("job:" + job_id)
    if lock is None:
        raise AqError(f"job {job_id!r} is busy (another aq command holds it)")
    try:
        if not transitions.retry(store, journal, job_id):
            raise AqError(f"job {job_id!r} was moved by someone else")
    finally:
        lock.release()


def failed_dependants(store: Any, job_id: str) -> list[str]:
    """The jobs in failed/ as ``dependency_failed`` because of ``job_id``, directly or through others."""
    from aq_core.plan import dependants
    from aq_core.store import State

    because: dict[str, list[str]] = {}
    for entry in store.list(State.FAILED):
        last = store.read_meta(entry.id).last
        if last.get("result") == "dependency_failed" and last.get("failed_dependency"):
            because[entry.id] = [last["failed_dependency"]]
    return dependants(job_id, because)


def cmd_cancel(args: argparse.Namespace) -> int:
    from aq_core.cancel import cancel
    from aq_core.journal import Journal
    from aq_core.notifications import command_notifier

    store = _store(args)
    with command_notifier(store, Journal(store)) as on_finished:
        print(cancel(store, args.job, on_finished=on_finished))
    return 0

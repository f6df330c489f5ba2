"""``aq explain``: why a job is where it is, from the same rules the runner applies.

The waiting job is read as the runner reads it (``inbox.Inbox``, looking only), the world as the
runner sees it (engine pauses, budgets, locks, where the jobs it waits for are), and
``decisions.reasons`` says what holds it back: one home for each rule.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from typing import Any

from aq_core.errors import UsageError
from aq_core.store import State, Store, host_lock

FINISHED = (State.DONE, State.FAILED)


def explain(store: Store, job_id: str, now: float | None = None) -> dict[str, Any]:
    """``{"id", "state", "runnable", "reasons": [{"kind", ...}]}`` for one job (see docs/cli.md)."""
    state = store.locate(job_id)
    if state is None:
        raise UsageError(f"no job {job_id!r} in {store.describe()}")
    meta = store.read_meta(job_id)
    out: dict[str, Any] = {"id": job_id, "state": state.value, "runnable": False, "reasons": []}
    if state in FINISHED:
        out["result"] = meta.get("result")
        if out["result"] == "dependency_failed":
            out["failed_dependency"] = meta.get("failed_dependency")
        return out
    if state is State.BUILDING:
        out["running"] = True
        return out
    return _waiting(store, job_id, out, time.time() if now is None else now)


def _waiting(store: Store, job_id: str, out: dict[str, Any], now: float) -> dict[str, Any]:
    from dataclasses import replace

    from aq_core import decisions
    from aq_core.inbox import Inbox
    from aq_core.journal import Journal

    config = store.files.config()
    inbox = Inbox(store, config, Journal(store, out=io.StringIO()), None, read_only=True)  # type: ignore[arg-type]
    running = {e.id for e in store.list(State.BUILDING)}
    candidates = list(inbox.round(running))
    view = _world(store, config, now, inbox.states)
    me = next((c for c in candidates if c.id == job_id), None)
    if me is None:
        meta = store.read_meta(job_id)
        why = inbox.problem(job_id) or meta.get("error") or "it cannot run here"
        out["reasons"] = [{"kind": "invalid", "error": why}]
        return out
    held = {name for name in _locks(me, view) if _is_held(store, name)}
    view = replace(view, held=frozenset(held))
    holders = _holders(store, config, held) if held else {}
    reasons = decisions.reasons(me, view, candidates, holders)
    if not store.coord.live_runners():
        reasons.append({"kind": "no_runner"})
    out["runnable"] = all(r["kind"] in ("queued_behind", "no_runner") for r in reasons)
    out["reasons"] = reasons
    return out


def _locks(c: Any, view: Any) -> tuple[str, ...]:
    from aq_core.decisions import engine_for

    engine = engine_for(c, view)[0]
    return c.locks + (("probe:" + engine,) if engine in view.probing else ())


def _is_held(store: Store, name: str) -> bool:
    lock = store.coord.try_lock(name)
    if lock is None:
        return True
    lock.release()
    return False


def _world(store: Store, config: Any, now: float, states: dict[str, str | None]) -> Any:
    """The runner's ``decisions.View``: paused and probing engines, spent budgets, dependencies' states."""
    from aq_core import decisions, limits, plugins

    spent: frozenset[str] = frozenset()
    if config.budgets:
        metas = (store.read_meta(e.id) for e in store.list())
        spend = limits.spend_since(metas, limits.day_start(now))
        spent = frozenset(n for n in plugins.installed_engines() if limits.budget_block(config, spend, n))
    return decisions.View(
        now=now,
        paused={name: p.until for name, p in limits.active_pauses(store, now).items()},
        probing=frozenset(limits.probing_engines(store, now)),
        budget_spent=spent,
        states=states,
    )


def _holders(store: Store, config: Any, held: set[str]) -> dict[str, str]:
    """Which running job holds each lock of ``held`` (its ``lock:``, its work tree's)."""
    from pathlib import Path

    from aq_core import plugins
    from aq_core.job import parse_job

    found: dict[str, str] = {}
    for entry in store.list(State.BUILDING):
        try:
            meta = store.read_meta(entry.id)
            cwd = meta.get("add_dir")
            job = parse_job(
                Path(f"{entry.id}.md"),
                store.read_job(entry.id, State.BUILDING),
                default_cwd=Path(cwd) if cwd else None,
                job_id=entry.id,
                check_cwd=False,
                profiles=config.profiles,
            )
        except Exception:  # a running job's file is not ours to judge here
            continue
        for name in (job.lock and "lock:" + job.lock, host_lock(plugins.work_lock(job.cwd, job.isolation))):
            if name in held:
                found.setdefault(name, entry.id)
    return found


# -- the words --------------------------------------------------------------------------------------


def _when(epoch: float, now: float) -> str:
    from datetime import datetime

    from aq_core.durations import format_duration

    at = datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M")
    return f"{at} (in {format_duration(max(0.0, epoch - now))})"


def sentences(record: dict[str, Any], now: float | None = None) -> list[str]:
    """``record`` (from ``explain``) as plain sentences, one per reason."""
    now = time.time() if now is None else now
    job, state = record["id"], record["state"]
    if "result" in record:
        line = f"{job} is in {state}/ with result {record['result']}"
        if record.get("failed_dependency"):
            line += f": the job it waits for, {record['failed_dependency']}, failed, so it never ran"
        return [line + "."]
    if record.get("running"):
        return [f"{job} is running (in building/)."]
    head = "may start now" if record["runnable"] else "cannot start yet"
    lines = [f"{job} is waiting in inbox/ and {head}."]
    for r in record["reasons"]:
        kind = r["kind"]
        if kind == "dependency":
            where = f"in {r['state']}/" if r["state"] else "not in the queue"
            lines.append(f"It waits for job {r['job']} ({where}).")
        elif kind == "not_before":
            lines.append(f"It is not eligible before {_when(r['until'], now)}.")
        elif kind == "backoff":
            lines.append(f"It waits out a retry backoff until {_when(r['until'], now)}.")
        elif kind == "lock":
            holder = f"job {r['held_by']}" if r.get("held_by") else "another job"
            lines.append(f"Its lock {r['lock']} is held by {holder}.")
        elif kind == "engine_paused":
            lines.append(f"Engine {r['engine']} is paused after a usage or rate limit until {_when(r['until'], now)}.")
        elif kind == "budget":
            lines.append(f"The daily budget of {r['name']} is spent: it starts tomorrow.")
        elif kind == "no_runner":
            lines.append("No runner is running on this queue: start one with aq run.")
        elif kind == "queued_behind":
            ahead = r["ahead"]
            shown = ", ".join(ahead[:5]) + (f" and {len(ahead) - 5} more" if len(ahead) > 5 else "")
            lines.append(f"{len(ahead)} job{'s' if len(ahead) != 1 else ''} go first: {shown}.")
        elif kind == "invalid":
            lines.append(f"It cannot run: {r['error']}.")
    return lines


def cmd_explain(args: argparse.Namespace) -> int:
    from aq_core.store_open import open_store

    record = explain(open_store(args.root, url=args.store), args.job)
    if args.json:
        print(json.dumps(record))
    else:
        print("\n".join(sentences(record)))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("explain", help="why a job is where it is: what it waits for, or how it ended")
    p.add_argument("job", metavar="JOB")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_explain)

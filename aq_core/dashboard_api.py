"""The dashboard's data: the queue (``/api/state``), one job (``/api/job/<id>``) and the last 14 days.

Built from the same records as ``aq status --json``, ``aq insights`` and ``aq show``; never from a
job file or a log, so the prompt cannot reach the page. Values a corrupt meta file could make
unrepresentable (nan, inf) become unknown (None).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from datetime import datetime, timedelta
from typing import Any

from aq_core.durations import format_duration
from aq_core.errors import AqError
from aq_core.insights import job_record, rollup
from aq_core.status import STATE_ORDER, format_tokens, insights_line, job_row
from aq_core.store import State, Store

HISTORY_DAYS = 14
_DIFFSTATS: OrderedDict[tuple[str, str, str], str] = OrderedDict()  # a commit range's diffstat never changes
_DIFFSTATS_LOCK = threading.Lock()
DIFFSTAT_CACHE = 256


def finite(value: Any) -> Any:
    """``value`` with every nan or infinite float (from a corrupt meta value) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def json_bytes(data: Any) -> bytes:
    """Valid JSON with the same values; "<", ">" and "&" escaped so no response ever carries raw markup."""
    try:
        text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    except ValueError:  # a meta value of nan or inf: JSON (and the page) have no such number
        text = json.dumps(finite(data), separators=(",", ":"), allow_nan=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e").encode()


def job_insights(row: dict[str, Any]) -> str:
    """The insights column: ``insights_line``'s figures, the cost marked ``*`` when aq estimated it."""
    if row["state"] == State.INBOX.value and not row.get("attempts"):
        return ""  # as `aq status`: a job that never ran has no figures
    return insights_line(row)


def _engine_display(row: dict[str, Any]) -> dict[str, str]:
    tokens_in, tokens_out = row.get("tokens_in"), row.get("tokens_out")
    tokens = ""
    if tokens_in is not None or tokens_out is not None:
        tokens = f"{format_tokens(tokens_in) or '?'} in / {format_tokens(tokens_out) or '?'} out"
    cost = row.get("cost_usd")
    return {
        "success": f"{row['success_rate'] * 100:.0f}%" if row.get("success_rate") is not None else "",
        "tokens": tokens,
        "cost": f"${cost:.2f}{'*' if row.get('cost_estimated') else ''}" if cost is not None else "",
        "avg_duration": format_duration(row.get("avg_duration_s")),
    }


def _broken_row(job_id: str, state: State, exc: Exception) -> dict[str, Any]:
    error = f"aq cannot read this job's meta: {type(exc).__name__}: {exc}".splitlines()[0]
    row: dict[str, Any] = {"id": job_id, "state": state.value, "engine": None, "attempts": 0, "result": None}
    row.update(lock=None, next_eligible=None, error=error, estimated=[], finished=None)
    row["display"] = {"insights": error, "next": ""}
    return row


def snapshot(store: Store) -> dict[str, Any]:
    """Return ``{"jobs": [status rows], "engines": [rollup], "history": {...}, "generated": epoch}``.

    The rows are ``status_rows(store)`` and the rollup is ``rollup(status.finished_rows(store))``,
    computed in one pass so each job's meta is read once; the dashboard adds ``estimated``,
    ``finished`` and a ``display`` object of preformatted text (insights column, next eligible).
    Unlike the CLI, a corrupt figure (nan, inf) shows as unknown, and a record the core cannot
    read becomes a row with ``error`` instead of failing the whole page.
    """
    from aq_core.records import rows_for

    now = time.time()
    entries = store.scan()
    entries.sort(key=lambda e: (STATE_ORDER[e.state], e.queued, e.id))  # as status_rows

    def compute(entry: Any) -> dict[str, Any]:
        try:
            return job_row(entry.id, entry.state, store.read_meta(entry.id))
        except Exception as exc:  # one unreadable record must not blank the page for every job
            return _broken_row(entry.id, entry.state, exc)

    jobs, finished = [], []
    # Finished jobs come from the rows cache the CLI keeps, so a refresh reads only live jobs' meta.
    for cached in rows_for(store, entries, compute):
        # nan/inf in a meta value would break the formatting and JSON: such a figure is unknown.
        row = finite(cached.full())
        if "display" in row:  # a broken record: already shown as one row with its error
            jobs.append(row)
            continue
        if row["state"] in (State.DONE.value, State.FAILED.value):
            finished.append(row)  # as status.finished_rows
        nxt = row.get("next_eligible")
        row["display"] = {
            "insights": job_insights(row),
            "next": f"in {format_duration(max(0.0, nxt - now))}" if nxt else "",
        }
        jobs.append(row)
    engines = rollup(finished)
    for row in engines:
        row["display"] = _engine_display(row)
    return {
        "jobs": jobs,
        "engines": engines,
        "history": history(finished, now),
        "generated": round(now, 3),
        "root": store.describe(),
    }


def history(finished: list[dict[str, Any]], now: float, days: int = HISTORY_DAYS) -> dict[str, Any]:
    """Jobs by result and cost per engine for each of the last ``days`` local days (today last).

    A job counts on the day it finished; its cost goes to the engine of each attempt, as in the
    per-engine rollup. ``cost_estimated`` names the engines whose cost includes an aq estimate.
    """
    today = datetime.fromtimestamp(now).date()
    labels = [(today - timedelta(days=days - 1 - i)).isoformat() for i in range(days)]
    index = {label: i for i, label in enumerate(labels)}
    results: dict[str, list[int]] = {}
    cost: dict[str, list[float]] = {}
    estimated: set[str] = set()
    for row in finished:
        when = row.get("finished")
        i = index.get(datetime.fromtimestamp(when).date().isoformat()) if when else None
        if i is None:
            continue
        results.setdefault(row.get("result") or "unknown", [0] * days)[i] += 1
        for engine, spent in (row.get("by_engine") or {}).items():
            value = spent.get("cost_usd")
            if value is None:
                continue
            cost.setdefault(engine, [0.0] * days)[i] += value
            if spent.get("cost_estimated"):
                estimated.add(engine)
    order = sorted(results, key=lambda r: (r != "ok", -sum(results[r]), r))
    return {
        "days": labels,
        "results": {r: results[r] for r in order},
        "cost": {e: [round(v, 6) for v in cost[e]] for e in sorted(cost)},
        "cost_estimated": sorted(estimated),
    }


def job_detail(store: Store, job_id: str) -> dict[str, Any] | None:
    """Return what the job view shows (None for no such job): figures in total and per attempt,
    the work's diffstat, the failure with its detail, and the pull request."""
    from aq_core.pr import figure_rows
    from aq_core.show import failure_of
    from aq_core.workdiff import NoCheckpoint, work_of

    state = store.locate(job_id)
    if state is None:
        return None
    meta = store.read_meta(job_id)
    last = meta.last
    record = finite(job_record(job_id, state, meta))
    if state is State.BUILDING and meta.number("started"):
        record["running_s"] = round(time.time() - (meta.number("started") or 0), 1)
    detail: dict[str, Any] = {
        "job": record,
        "figures": [[name, text] for name, text in figure_rows(record) if text],
        "runs": [_run_display(run) for run in record.get("runs") or []],
        "failure": failure_of(record, last),
        "work": None,
        "diffstat": None,
        "work_note": None,
        "pr_url": last.get("pr_url") if (last.get("pr_url") or "").startswith("https://") else None,
        "pr_error": last.get("pr_error") or None,
        "pr_requested": last.get("pr_requested") or None,
    }
    try:
        work = work_of(job_id, last)
        detail["work"] = {"branch": work.branch, "base": work.base, "commit": work.commit, "range": work.range}
        detail["diffstat"] = _diffstat(work)
    except NoCheckpoint:
        detail["work_note"] = "no checkpoint (it did not run in a git repository, or has not run yet)"
    except AqError as exc:
        detail["work_note"] = str(exc).removeprefix(f"job {job_id!r}: ")
    return detail


def _run_display(run: dict[str, Any]) -> dict[str, str]:
    tokens = ""
    if run.get("tokens_in") is not None or run.get("tokens_out") is not None:
        tokens = f"{format_tokens(run.get('tokens_in')) or '?'} in / {format_tokens(run.get('tokens_out')) or '?'} out"
    cost = run.get("cost_usd")
    estimated = "cost_usd" in (run.get("estimated") or [])
    changes = ""
    if run.get("lines_added") is not None or run.get("lines_deleted") is not None:
        changes = f"+{run.get('lines_added') or 0}/-{run.get('lines_deleted') or 0}"
    return {
        "attempt": str(run.get("attempt") or ""),
        "engine": run.get("engine") or "",
        "model": run.get("model") or "",
        "result": run.get("result") or ("running" if "finished" not in run else ""),
        "exit": "" if run.get("exit") is None else str(run["exit"]),
        "duration": format_duration(run.get("duration_s")),
        "tokens": tokens,
        "cost": f"${cost:.2f}{'*' if estimated else ''}" if cost is not None else "",
        "changes": changes,
        "detail": run.get("detail") or "",
    }


def _diffstat(work: Any) -> str:
    from aq_core.workdiff import diffstat

    key = (str(work.repo), work.base, work.commit)
    with _DIFFSTATS_LOCK:
        if key in _DIFFSTATS:
            _DIFFSTATS.move_to_end(key)
            return _DIFFSTATS[key]
    text = diffstat(work)
    with _DIFFSTATS_LOCK:
        _DIFFSTATS[key] = text
        while len(_DIFFSTATS) > DIFFSTAT_CACHE:
            _DIFFSTATS.popitem(last=False)
    return text

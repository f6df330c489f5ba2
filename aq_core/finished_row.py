"""A finished job's status row (``status.job_row`` for ``done/`` and ``failed/``) in one pass over its meta.

The rows cache's cold rebuild computes this for every finished job (100,000 at a time), so it is
built straight from the meta's pairs: only the attempt keys the row shows are kept and typed (the
general ``insights.run_records`` types every run key for ``aq insights JOB``), no ``Meta`` helper is
called per key. ``tests/test_finished_row.py`` checks it gives exactly ``job_row``'s dict, key order
included, for generated and odd metas.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from aq_core.meta import finite as _number

# The run keys the row sums, in the order a job's spend per engine keeps them: the key, whether it
# is an integer, whether it is spend (``by_engine``).
_KINDS = (
    ("tokens_in", True, True),
    ("tokens_out", True, True),
    ("tokens_cached", True, True),
    ("turns", True, False),
    ("tool_calls", True, False),
    ("cost_usd", False, True),
    ("duration_s", False, False),
)
_first = itemgetter(0)


def _integer(value: str | None) -> int | None:
    """``insights._typed`` for an integer key: a finite number below 1e18, truncated; else None."""
    if not value:
        return None
    try:  # ``finite`` inlined: four of these a job
        number = float(value)
    except ValueError:
        return None
    return int(number) if abs(number) < 1e18 else None  # nan and inf are not below it


def finished_row(job_id: str, state: str, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """``job_row(job_id, state, meta)`` for a finished ``state`` ("done" or "failed"), from ``meta.pairs``."""
    # Each attempt is the pairs from its ``attempt=`` line to the next: found by C-level index calls
    # (as many as ``count`` says: no exception ends the search) and made into a dict by one slice
    # (the last value within an attempt wins, as in ``Meta.runs``).
    keys = list(map(_first, pairs))
    index, at, starts = keys.index, -1, []
    for _ in range(keys.count("attempt")):
        at = index("attempt", at + 1)
        starts.append(at)
    starts.append(len(pairs))
    runs = [dict(pairs[starts[i] + 1 : starts[i + 1]]) for i in range(len(starts) - 1)]
    last = dict(pairs)
    get = last.get
    engine = get("engine")
    attempts = _number(get("attempts"))
    totals: dict[str, Any] = {}
    models: list[str] = []
    estimated: set[str] = set()
    engines: set[str] = set()
    by_engine: dict[str, dict[str, Any]] = {}
    fallback = engine or "?"
    exit_code = None
    for raw in runs:  # typed as ``insights.run_records`` types them, summed as ``job_record`` sums them
        rget = raw.get
        ran_on = rget("engine")
        model = rget("model")
        if model:
            models.append(model)
        value = rget("estimated")
        names = [e for e in value.split(",") if e] if value else None
        if names:
            estimated.update(names)
        if ran_on:
            engines.add(ran_on)
        spent = by_engine.setdefault(ran_on or fallback, {})
        for key, integer, spend in _KINDS:  # ``finite`` inlined: seven keys a run, 100,000 jobs a rebuild
            value = rget(key)
            if not value:
                continue
            try:
                number = float(value)
            except ValueError:
                continue
            if number - number != 0.0 or (integer and not abs(number) < 1e18):  # nan, inf; too big an integer
                continue
            if integer:
                number = int(number)
            totals[key] = totals.get(key, 0) + number
            if spend:
                spent[key] = spent.get(key, 0) + number
        if names and "cost_usd" in names:
            spent["cost_estimated"] = True
        exit_code = _integer(rget("exit"))
    tget = totals.get
    cost, duration = tget("cost_usd"), tget("duration_s")
    finished, added, after, priority = get("finished"), get("added"), get("after"), get("priority")
    if priority is not None:
        number = _number(priority)
        priority = int(number) if number is not None else 0
    # One dict display in ``job_row``'s key order (the JSON text keeps it).
    record = {
        "id": job_id,
        "state": state,
        "engine": engine,
        "result": get("result"),
        "attempts": int(attempts) if attempts is not None else 0,
        "tokens_in": tget("tokens_in"),
        "tokens_out": tget("tokens_out"),
        "tokens_cached": tget("tokens_cached"),
        "cost_usd": round(cost, 6) if cost is not None else None,
        "turns": tget("turns"),
        "tool_calls": tget("tool_calls"),
        "duration_s": round(duration, 6) if duration is not None else None,
        "exit": exit_code,
        "model": models[-1] if models else None,
        "files_changed": _integer(get("files_changed")),
        "lines_added": _integer(get("lines_added")),
        "lines_deleted": _integer(get("lines_deleted")),
        "estimated": sorted(estimated),
        "wip_branch": get("wip_branch"),
        "wip_base": get("wip_base"),
        "wip_commit": get("wip_commit"),
        "last_failure": get("last_failure"),
        "error": get("error"),
        "engines": sorted(engines),
        "by_engine": by_engine,
        "finished": _number(finished) if finished else None,
        "added": _number(added) if added else None,
        "lock": get("lock"),
        "next_eligible": None,  # only a waiting job waits for its backoff
        "after": after.split(",") if after else None,
        "priority": priority,
        "not_before": _number(get("not_before")),
    }
    return record

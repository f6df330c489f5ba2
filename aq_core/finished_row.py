"""A finished job's status row (``status.job_row`` for ``done/`` and ``failed/``) in one pass over its meta.

The rows cache's cold rebuild computes this for every finished job (100,000 at a time), so it is
built straight from the meta's pairs: only the attempt keys the row shows are kept and typed (the
general ``insights.run_records`` types every run key for ``aq insights JOB``), no ``Meta`` helper is
called per key. ``tests/test_finished_row.py`` checks it gives exactly ``job_row``'s dict, key order
included, for generated and odd metas.
"""

from __future__ import annotations

import contextlib
from operator import itemgetter
from typing import Any

_SUMMED = ("tokens_in", "tokens_out", "tokens_cached", "cost_usd", "turns", "tool_calls", "duration_s")
_SPENT = ("tokens_in", "tokens_out", "tokens_cached", "cost_usd")
# The run keys the row reads, and their types: 0 text, 1 integer, 2 number, 3 a list of names.
_KINDS = tuple(
    {
        "engine": 0,
        "model": 0,
        "exit": 1,
        "tokens_in": 1,
        "tokens_out": 1,
        "tokens_cached": 1,
        "turns": 1,
        "tool_calls": 1,
        "duration_s": 2,
        "cost_usd": 2,
        "estimated": 3,
    }.items()
)
_first = itemgetter(0)


def _number(value: str | None) -> float | None:
    """A finite float, else None (``meta.finite``, inlined)."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number - number == 0.0 else None  # nan and inf give nan


def _integer(value: str | None) -> int | None:
    """``insights._typed`` for an integer key: a finite number below 1e18, truncated; else None."""
    if not value:
        return None
    number = _number(value)
    return int(number) if number is not None and abs(number) < 1e18 else None


def finished_row(job_id: str, state: str, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """``job_row(job_id, state, meta)`` for a finished ``state`` ("done" or "failed"), from ``meta.pairs``."""
    # Each attempt is the pairs from its ``attempt=`` line to the next: found by C-level index calls
    # and made into a dict by one slice (the last value within an attempt wins, as in ``Meta.runs``).
    keys = list(map(_first, pairs))
    starts, at = [], -1
    with contextlib.suppress(ValueError):
        while True:
            at = keys.index("attempt", at + 1)
            starts.append(at)
    starts.append(len(pairs))
    runs = [dict(pairs[starts[i] + 1 : starts[i + 1]]) for i in range(len(starts) - 1)]
    last = dict(pairs)
    get = last.get
    engine = get("engine")
    attempts = _number(get("attempts"))
    record: dict[str, Any] = {
        "id": job_id,
        "state": state,
        "engine": engine,
        "result": get("result"),
        "attempts": int(attempts) if attempts is not None else 0,
    }
    totals: dict[str, Any] = {}
    models: list[str] = []
    estimated: set[str] = set()
    engines: set[str] = set()
    by_engine: dict[str, dict[str, Any]] = {}
    fallback = engine or "?"
    exit_code = None
    kinds = _KINDS
    for raw in runs:
        typed: dict[str, Any] = {}
        for key, kind in kinds:
            value = raw.get(key)
            if not value:
                continue
            if kind == 0:
                typed[key] = value
            elif kind == 1:
                number = _number(value)
                if number is not None and abs(number) < 1e18:
                    typed[key] = int(number)
            elif kind == 2:
                number = _number(value)
                if number is not None:
                    typed[key] = number
            else:
                names = [e for e in value.split(",") if e]
                if names:
                    typed[key] = names
        for key in _SUMMED:
            value = typed.get(key)
            if value is not None:
                totals[key] = totals.get(key, 0) + value
        model = typed.get("model")
        if model:
            models.append(model)
        names = typed.get("estimated")
        if names:
            estimated.update(names)
        ran_on = typed.get("engine")
        if ran_on:
            engines.add(ran_on)
        spent = by_engine.setdefault(ran_on or fallback, {})
        for key in _SPENT:
            value = typed.get(key)
            if value is not None:
                spent[key] = spent.get(key, 0) + value
        if names and "cost_usd" in names:
            spent["cost_estimated"] = True
        exit_code = typed.get("exit")
    for key in _SUMMED:
        total = totals.get(key)
        if total is None:
            record[key] = None
        elif key == "cost_usd" or key == "duration_s":
            record[key] = round(total, 6)
        else:
            record[key] = int(total)
    record["exit"] = exit_code
    record["model"] = models[-1] if models else None
    record["files_changed"] = _integer(get("files_changed"))
    record["lines_added"] = _integer(get("lines_added"))
    record["lines_deleted"] = _integer(get("lines_deleted"))
    record["estimated"] = sorted(estimated)
    record["wip_branch"] = get("wip_branch")
    record["wip_base"] = get("wip_base")
    record["wip_commit"] = get("wip_commit")
    record["last_failure"] = get("last_failure")
    record["error"] = get("error")
    record["engines"] = sorted(engines)
    record["by_engine"] = by_engine
    finished, added = get("finished"), get("added")
    record["finished"] = _number(finished) if finished else None
    record["added"] = _number(added) if added else None
    record["lock"] = get("lock")
    record["next_eligible"] = None  # only a waiting job waits for its backoff
    after = get("after")
    record["after"] = after.split(",") if after else None
    priority = get("priority")
    if priority is not None:
        number = _number(priority)
        priority = int(number) if number is not None else 0
    record["priority"] = priority
    record["not_before"] = _number(get("not_before"))
    return record

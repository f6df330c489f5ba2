"""The per-engine rollup of ``aq insights``, as a tally that jobs can be added to and taken from.

A tally holds, per engine, what the rollup's figures are made of: counts, integer token sums, and
the durations and costs themselves. Durations and costs are summed with ``math.fsum`` (exactly, then
rounded once), so a sum does not depend on the order the jobs were added in: the view (``views``)
keeps a tally, and a read after a few jobs changed takes the old rows out and puts the new ones in
(``apply``) and gets the figures a full pass over every job would give, to the bit.
"""

from __future__ import annotations

import math
from typing import Any

TOKENS = ("tokens_in", "tokens_out", "tokens_cached")


def _slot() -> dict[str, Any]:
    # refs: the jobs that name this engine (as their engine or in by_engine): the slot goes with the last
    return {"refs": 0, "jobs": 0, "ok": 0, "failed": 0, "durs": [], "costs": [], "est": 0, "tokens": [0, 0, 0, 0, 0, 0]}


def apply(acc: dict[str, dict[str, Any]], rec: dict[str, Any], sign: int = 1) -> None:
    """Add the job ``rec`` to the tally ``acc`` (``sign`` -1: take it out; ValueError if it was not in).

    A job counts under the engine of its last attempt; tokens and cost under the engine of each
    attempt (``by_engine``), so a job that fell back from one engine to another credits both."""
    get = rec.get
    touched = []
    engine = get("engine")
    if engine:  # a file that never validated ran on no engine
        slot = acc.get(engine) or acc.setdefault(engine, _slot())
        touched.append(engine)
        slot["jobs"] += sign
        if get("result") == "ok":
            slot["ok"] += sign
        if get("state") == "failed":
            slot["failed"] += sign
        duration = get("duration_s")
        if duration is not None:
            _put(slot["durs"], duration, sign)
    for spent_on, spent in (get("by_engine") or {}).items():
        slot = acc.get(spent_on) or acc.setdefault(spent_on, _slot())
        if spent_on not in touched:
            touched.append(spent_on)
        tokens = slot["tokens"]
        for key, value in spent.items():
            if key == "cost_estimated":
                if value:
                    slot["est"] += sign
            elif value is None:
                continue
            elif key == "cost_usd":
                _put(slot["costs"], value, sign)
            elif key in TOKENS:
                i = 2 * TOKENS.index(key)
                tokens[i] += sign
                tokens[i + 1] += sign * value
    for name in touched:
        acc[name]["refs"] += sign
    if sign < 0:
        for name in [name for name, slot in acc.items() if slot["refs"] <= 0]:
            if acc[name]["refs"] < 0:
                raise ValueError(f"{name}: taken out more often than put in")
            del acc[name]


def _put(values: list, value: Any, sign: int) -> None:
    if sign > 0:
        values.append(value)
    else:
        values.remove(value)  # ValueError when it is not there: the caller starts again from every job


def tally(recs: Any) -> dict[str, dict[str, Any]]:
    acc: dict[str, dict[str, Any]] = {}
    for rec in recs:
        apply(acc, rec)
    return acc


def finish(acc: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per engine: jobs, outcomes, tokens, cost (marked when estimated), average time."""
    rows = []
    for engine, a in sorted(acc.items()):
        jobs, ok, tokens, costs, durs = a["jobs"], a["ok"], a["tokens"], a["costs"], a["durs"]
        rows.append(
            {
                "engine": engine,
                "jobs": jobs,
                "succeeded": ok,
                "failed": a["failed"],
                "success_rate": round(ok / jobs, 4) if jobs else None,
                "tokens_in": tokens[1] if tokens[0] else None,
                "tokens_out": tokens[3] if tokens[2] else None,
                "tokens_cached": tokens[5] if tokens[4] else None,
                "cost_usd": round(math.fsum(costs), 6) if costs else None,
                "cost_estimated": a["est"] > 0,
                "avg_duration_s": round(math.fsum(durs) / len(durs), 3) if durs else None,
            }
        )
    return rows

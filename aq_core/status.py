"""``aq status``: one row per job (folder + meta), as a table or as JSON."""

from __future__ import annotations

import time
from typing import Any

from aq_core.durations import format_duration
from aq_core.errors import shown
from aq_core.meta import Meta
from aq_core.store import State, Store

STATE_ORDER = {State.BUILDING: 0, State.INBOX: 1, State.FAILED: 2, State.DONE: 3}


def job_row(job_id: str, state: State, meta: Meta) -> dict[str, Any]:
    """Return the status record of one job: the keys ``status --json`` promises, plus its insights."""
    from aq_core.insights import job_record

    row = job_record(job_id, state, meta, with_runs=False)
    next_eligible = meta.number("next_eligible")
    if state is not State.INBOX or (next_eligible is not None and next_eligible <= time.time()):
        next_eligible = None
    row["lock"] = meta.get("lock")
    row["next_eligible"] = next_eligible
    if state is State.BUILDING:
        started = meta.number("started")
        if started:
            row["running_s"] = round(time.time() - started, 1)
    return row


def status_rows(store: Store, states: tuple[State, ...] | None = None) -> list[dict[str, Any]]:
    """Return every job's row, running first, then waiting, failed, done (oldest first in each).

    Finished jobs' rows come from a rebuildable cache (``aq_core.records``) while their state is
    unchanged; the rest are read from meta.
    """
    from aq_core.records import rows_for

    entries = store.scan() if states is None else [e for s in states for e in store.scan(s)]
    entries.sort(key=lambda e: (STATE_ORDER[e.state], e.queued, e.id))
    return rows_for(store, entries, lambda e: job_row(e.id, e.state, store.read_meta(e.id)))


def engine_rows(store: Store, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the engines that are paused or have a daily budget, with why and until when."""
    if not store.engines.names() and not (store.files.root / "config.yaml").exists():
        return []  # nothing paused, no budgets: skip loading the limits machinery
    from aq_core import limits

    config = store.files.config()
    now = time.time()
    pauses = limits.active_pauses(store, now)
    spend: dict[str, float] = {}
    if config.budgets:
        # Only jobs that ran today can have spent today's budget: read just their meta.
        today = limits.day_start(now)
        metas = (
            store.read_meta(r["id"])
            for r in rows
            if r["state"] in ("inbox", "building") or (r.get("finished") or 0) >= today
        )
        spend = limits.spend_since(metas, today)
    names = sorted(set(pauses) | {n for n in config.budgets if n != "daily_usd"})
    rows = []
    for name in names:
        pause = pauses.get(name)
        block = limits.budget_block(config, spend, name) if config.budgets else None
        rows.append(
            {
                "engine": name,
                "paused_until": pause.until if pause else None,
                "pause_reason": pause.reason if pause else None,
                "pause_job": pause.job if pause else None,
                "budget_usd": config.budgets.get(name),
                "spent_today_usd": round(spend.get(name, 0.0), 6) if config.budgets else None,
                "budget_reached": block,
            }
        )
    if "daily_usd" in config.budgets:
        total = sum(spend.values())
        rows.append(
            {
                "engine": "(all)",
                "paused_until": None,
                "pause_reason": None,
                "pause_job": None,
                "budget_usd": config.budgets["daily_usd"],
                "spent_today_usd": round(total, 6),
                "budget_reached": (
                    f"the daily budget of ${config.budgets['daily_usd']:.2f} is spent"
                    if total >= config.budgets["daily_usd"]
                    else None
                ),
            }
        )
    return rows


def render_engines(rows: list[dict[str, Any]]) -> str:
    """The lines under the table about paused engines and budgets (empty when there is nothing to say)."""
    lines = []
    for row in rows:
        if row["paused_until"]:
            from aq_core.reset_time import format_reset

            lines.append(
                f"  {row['engine']}: paused until {format_reset(row['paused_until'])} ({row['pause_reason']}, hit by "
                f"{row['pause_job']}); `aq resume {row['engine']}` lifts it"
            )
        if row["budget_reached"]:
            lines.append(f"  {row['engine']}: budget reached: {row['budget_reached']}; no new job until tomorrow")
        elif row["budget_usd"] is not None:
            lines.append(f"  {row['engine']}: ${row['spent_today_usd']:.2f} of ${row['budget_usd']:.2f} spent today")
    return ("engines:\n" + "\n".join(lines)) if lines else ""


def format_tokens(n: float | None) -> str:
    if n is None:
        return ""
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 1000:
        return f"{n / 1000:.1f}k"
    return str(int(n))


def insights_line(row: dict[str, Any]) -> str:
    """The compact sub-line under a running or finished job: time, attempts, tokens, cost, lines."""
    parts = []
    if row["state"] == "building" and row.get("running_s") is not None:
        parts.append(f"running {format_duration(row['running_s'])}")
    elif row.get("duration_s") is not None:
        parts.append(format_duration(row["duration_s"]))
    if row.get("attempts"):
        parts.append(f"{row['attempts']} attempt{'s' if row['attempts'] != 1 else ''}")
    tokens = [row.get("tokens_in"), row.get("tokens_out")]
    if any(t is not None for t in tokens):
        parts.append(f"{format_tokens(tokens[0]) or '?'} in / {format_tokens(tokens[1]) or '?'} out")
    if row.get("cost_usd") is not None:
        parts.append(f"${row['cost_usd']:.2f}{'*' if 'cost_usd' in (row.get('estimated') or []) else ''}")
    if row.get("lines_added") is not None or row.get("lines_deleted") is not None:
        parts.append(f"+{row.get('lines_added', 0)}/-{row.get('lines_deleted', 0)}")
    if row.get("error"):
        error = row["error"]
        parts.append(error if len(error) <= 100 else error[:99] + "…")
    elif row.get("last_failure") and row.get("result") not in ("ok", row.get("last_failure")):
        parts.append(f"last failure: {row['last_failure']}")
    return " · ".join(parts)


def table_cells(row: dict[str, Any], now: float) -> tuple[list[str], str]:
    """The status table's cells for one row, and its insights sub-line ("" for none)."""
    nxt = row.get("next_eligible")
    cells = [
        shown(row["id"]),
        row["state"],
        row.get("engine") or "",
        str(row.get("attempts") or 0),
        row.get("result") or "",
        row.get("lock") or "",
        f"in {format_duration(max(0.0, nxt - now))}" if nxt else "",
    ]
    sub = insights_line(row) if row["state"] != "inbox" or row.get("attempts") else ""
    return cells, sub


def render_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no jobs"
    from aq_core.table import simple_table

    now = time.time()
    table = []
    subs = []
    for row in rows:
        # A finished job's cells never change: the rows cache keeps them ready (``records``).
        cells, sub = getattr(row, "cells", None) or table_cells(row, now)
        table.append(cells)
        subs.append(sub)
    text = simple_table(table, ["ID", "STATE", "ENGINE", "ATTEMPTS", "RESULT", "LOCK", "NEXT"])
    lines = text.splitlines()
    out = lines[:2]
    for line, sub in zip(lines[2:], subs, strict=True):
        out.append(line)
        if sub:
            out.append("  └ " + sub)
    return "\n".join(out)

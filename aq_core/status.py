"""``aq status``: one row per job (folder + meta), as a table or as JSON."""

from __future__ import annotations

import time
from typing import Any

from aq_core.durations import format_duration
from aq_core.meta import Meta
from aq_core.store import FsStore, State

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


def status_rows(store: FsStore) -> list[dict[str, Any]]:
    entries = store.list()
    entries.sort(key=lambda e: (STATE_ORDER[e.state], e.queued, e.id))
    return [job_row(e.id, e.state, store.read_meta(e.id)) for e in entries]


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
    elif row.get("last_failure") and row.get("result") != row.get("last_failure"):
        parts.append(f"last failure: {row['last_failure']}")
    return " · ".join(parts)


def render_table(rows: list[dict[str, Any]]) -> str:
    from tabulate import tabulate

    if not rows:
        return "no jobs"
    now = time.time()
    table = []
    subs = []
    for row in rows:
        nxt = row.get("next_eligible")
        table.append(
            [
                row["id"],
                row["state"],
                row.get("engine") or "",
                row.get("attempts") or 0,
                row.get("result") or "",
                row.get("lock") or "",
                f"in {format_duration(max(0.0, nxt - now))}" if nxt else "",
            ]
        )
        subs.append(insights_line(row) if row["state"] != "inbox" or row.get("attempts") else "")
    text = tabulate(
        table, headers=["ID", "STATE", "ENGINE", "ATTEMPTS", "RESULT", "LOCK", "NEXT"], disable_numparse=True
    )
    lines = text.splitlines()
    out = lines[:2]
    for line, sub in zip(lines[2:], subs, strict=True):
        out.append(line)
        if sub:
            out.append("  └ " + sub)
    return "\n".join(out)

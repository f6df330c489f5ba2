"""``aq status``: one row per job (folder + meta), as a table or as JSON; the rows of finished jobs.

``format_tokens`` is re-exported for the dashboard.
"""

from __future__ import annotations

import time
from typing import Any

from aq_core.durations import format_duration, format_tokens  # noqa: F401 (format_tokens: re-exported)
from aq_core.errors import shown
from aq_core.meta import Meta
from aq_core.store import Entry, State, Store

STATE_ORDER = {State.BUILDING: 0, State.INBOX: 1, State.FAILED: 2, State.DONE: 3}
# The status table's cells of a finished row are kept in the rows cache under this tag: change it
# when ``table_cells`` or ``insights_line`` changes what they show (the cache re-derives them).
LAYOUT = "table-2"
HEADERS = ("ID", "STATE", "ENGINE", "ATTEMPTS", "RESULT", "LOCK", "NEXT")


def job_row(job_id: str, state: State, meta: Meta) -> dict[str, Any]:
    """Return the status record of one job: the keys ``status --json`` promises, plus its insights."""
    from aq_core.insights import job_record

    row = job_record(job_id, state, meta, with_runs=False)
    next_eligible = meta.number("next_eligible")
    if state is not State.INBOX or (next_eligible is not None and next_eligible <= time.time()):
        next_eligible = None
    row["lock"] = meta.get("lock")
    row["next_eligible"] = next_eligible
    after = meta.get("after")
    row["after"] = after.split(",") if after else None
    row["priority"] = meta.integer("priority") if meta.get("priority") is not None else None
    row["not_before"] = meta.number("not_before")
    if state is State.BUILDING:
        started = meta.number("started")
        if started:
            row["running_s"] = round(time.time() - started, 1)
    return row


def status_rows(
    store: Store, states: tuple[State, ...] | None = None, entries: list[Entry] | None = None
) -> list[dict[str, Any]]:
    """Return every job's row (or ``entries``' rows), running first, then waiting, failed, done (oldest
    first in each).

    Finished jobs' rows come from a rebuildable cache (``aq_core.records``) while their state is
    unchanged; the rest are read from meta.
    """
    from aq_core.records import rows_for

    if entries is None:
        entries = store.scan() if states is None else [e for s in states for e in store.scan(s)]
    return rows_for(store, in_status_order(entries), row_maker(store), finished_cells, LAYOUT)


def row_maker(store: Store) -> Any:
    """``compute(entry)``: an entry's row from its meta (a finished job's by ``finished_row``'s one pass)."""
    from aq_core.finished_row import finished_row

    read, done, failed = store.read_meta, State.DONE, State.FAILED

    def compute(entry: Entry) -> dict[str, Any]:
        state = entry.state
        if state is done or state is failed:
            return finished_row(entry.id, state.value, read(entry.id).pairs)
        return job_row(entry.id, state, read(entry.id))

    return compute


def in_status_order(entries: list[Entry]) -> list[Entry]:
    """Running, waiting, failed, done; oldest first in each (sorted per state: no per-entry key function;
    by id, then stably by queue time: two sorts on one plain key each beat one on a tuple of two)."""
    from operator import attrgetter

    buckets: dict[State, list[Entry]] = {state: [] for state in sorted(STATE_ORDER, key=STATE_ORDER.__getitem__)}
    for entry in entries:
        buckets[entry.state].append(entry)
    ordered: list[Entry] = []
    for bucket in buckets.values():
        bucket.sort(key=attrgetter("id"))
        bucket.sort(key=attrgetter("queued"))
        ordered += bucket
    return ordered


def finished_entries(store: Store) -> list[Entry]:
    """The listing of ``done/`` then ``failed/``: what the rows cache and the view are kept for."""
    scan_finished = getattr(store, "scan_finished", None)  # one query, not one per state (PostgreSQL)
    if scan_finished is not None:
        return scan_finished()
    return [e for state in (State.DONE, State.FAILED) for e in store.scan(state)]


def finished_rows(store: Store, entries: list[Entry] | None = None) -> list[dict[str, Any]]:
    """The records of every finished job (``done/`` and ``failed/``, or of ``entries``), in status order,
    from the rows cache, for ``aq insights`` (with their table cells, as ``status_rows`` keeps them)."""
    if entries is None:
        entries = finished_entries(store)
    return status_rows(store, entries=entries)


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


def insights_line(row: dict[str, Any]) -> str:
    """The compact sub-line under a running or finished job: time, attempts, tokens, cost, lines."""
    # Called for every row of a 100,000-job table: one lookup per field, no helper lists.
    get = row.get
    parts = []
    running = get("running_s") if row["state"] == "building" else None
    if running is not None:
        parts.append("running " + format_duration(running))
    else:
        duration = get("duration_s")
        if duration is not None:
            parts.append(format_duration(duration))
    attempts = get("attempts")
    if attempts:
        parts.append("1 attempt" if attempts == 1 else f"{attempts} attempts")
    tokens_in, tokens_out = get("tokens_in"), get("tokens_out")
    if tokens_in is not None or tokens_out is not None:
        parts.append(f"{format_tokens(tokens_in) or '?'} in / {format_tokens(tokens_out) or '?'} out")
    cost = get("cost_usd")
    if cost is not None:
        estimated = get("estimated")
        parts.append(f"${cost:.2f}*" if estimated and "cost_usd" in estimated else f"${cost:.2f}")
    added, deleted = get("lines_added"), get("lines_deleted")
    if added is not None or deleted is not None:
        parts.append(f"+{get('lines_added', 0)}/-{get('lines_deleted', 0)}")
    error = get("error")
    if error:
        parts.append(error if len(error) <= 100 else error[:99] + "…")
    else:
        last = get("last_failure")
        if last and get("result") not in ("ok", last):
            parts.append("last failure: " + last)
    return " · ".join(parts)


def waits_for(row: dict[str, Any], states: dict[str, str], now: float) -> str:
    """What a waiting job waits for, in a few words: the jobs of its ``after:`` not done yet, and
    its ``not_before`` or backoff time ("" for none)."""
    get = row.get
    parts = []
    after = get("after")
    if after:
        pending = [dep for dep in after if states.get(dep) != "done"]
        if pending:
            parts.append("after " + ", ".join(pending))
    until = max(get("next_eligible") or 0.0, get("not_before") or 0.0)
    if until > now:
        parts.append(f"in {format_duration(until - now)}")
    return " · ".join(parts)


def table_cells(row: dict[str, Any], now: float, states: dict[str, str] | None = None) -> tuple[list[str], str]:
    """The status table's cells for one row, and its insights sub-line ("" for none)."""
    get = row.get
    job_id, state, attempts = row["id"], row["state"], get("attempts")
    cells = [
        job_id if job_id.isprintable() else shown(job_id),
        state,
        get("engine") or "",
        str(attempts or 0),
        get("result") or "",
        get("lock") or "",
        waits_for(row, states or {}, now) if state == "inbox" else "",
    ]
    sub = insights_line(row) if state != "inbox" or attempts else ""
    return cells, sub


def finished_cells(row: dict[str, Any]) -> str:
    """A finished row's cells and sub-line, NUL-joined: they depend on nothing but the row (no clock), so
    the rows cache keeps them (one string loads much faster than eight)."""
    cells, sub = table_cells(row, 0.0)
    return "\0".join([*cells, sub])


def row_cells(row: dict[str, Any], now: float, states: dict[str, str]) -> tuple[list[str], str]:
    """A row's table cells and sub-line: kept in the rows cache for a finished row, else rendered."""
    kept = getattr(row, "extra", None)
    if kept is not None:
        parts = kept.split("\0")
        if len(parts) == 8:  # else a NUL inside a value: render it again
            return parts[:7], parts[7]
    return table_cells(row, now, states)


def render_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no jobs"
    from aq_core.table import column_widths, head_lines

    now = time.time()
    states = {row["id"]: row["state"] for row in rows}
    pairs = [row_cells(row, now, states) for row in rows]
    widths = column_widths([cells for cells, _ in pairs], HEADERS)
    return "\n".join(head_lines(HEADERS, widths) + body_lines(pairs, widths))


def body_lines(pairs: list[tuple[list[str], str]], widths: list[int]) -> list[str]:
    """The table's lines for ``pairs`` of cells and sub-line, at ``widths``: each row, then its sub-line."""
    from aq_core.table import row_format

    form = row_format(widths)
    out: list[str] = []
    append = out.append
    for cells, sub in pairs:
        append(form(*cells).rstrip())
        if sub:
            append("  └ " + sub)
    return out

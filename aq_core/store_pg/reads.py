"""``aq status`` and ``aq insights`` printed from the rows the server keeps, for a host with no rows cache.

A host that has never read the queue (no local rows cache) does not build one: the finished jobs'
lines, JSON texts, order and ``aq insights``' per-engine sums come from the server (schema version
5's columns, ``rows.DERIVED``), in one read-only snapshot, and the host prints them. Only running
and waiting jobs are computed on the host, from their meta, as always. A finished job whose kept row
is missing or stale (it finished a moment ago, or its row was computed by another layout) is
computed here from meta first and kept on the server, then the snapshot is read again.

The output is byte for byte what the filesystem store prints for the same jobs: the server sorts as
Python does (ids in code point order: ``COLLATE "C"``) and sums floats in the order
``insights.rollup`` adds them (``sum(... ORDER BY ...)`` adds left to right from the first value).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from aq_core.store import Entry, State
from aq_core.store_pg.rows import CELLS

# A kept row the server can print: finished, computed after the job's last move, in this layout.
_KEPT = "state IN ('done', 'failed') AND row_token = op_token AND row_layout = %(layout)s"
_MISSES = (
    "SELECT id, state, queued, op_token FROM aq_jobs WHERE state IN ('done', 'failed')"
    " AND (row_token IS DISTINCT FROM op_token OR row_layout IS DISTINCT FROM %(layout)s)"
)
_LIVE = "SELECT id, state, queued, op_token FROM aq_jobs WHERE state IN ('inbox', 'building')"
# Status order for finished jobs: failed, then done; oldest first in each (``status.in_status_order``).
_STATUS_ORDER = " ORDER BY state = 'done', queued, id COLLATE \"C\""
# ``insights.select``'s order: newest first (finished or 0), then id, descending.
_NEWEST = ' ORDER BY row_finished DESC, id COLLATE "C" DESC'
_NEWEST_SUM = 'ORDER BY row_finished DESC, id COLLATE "C" DESC'
_JOBS_SUMS = f"""
SELECT row_engine, count(*), count(*) FILTER (WHERE row_result = 'ok'), count(*) FILTER (WHERE state = 'failed'),
    sum(row_duration {_NEWEST_SUM}), count(row_duration)
FROM aq_jobs WHERE {_KEPT} AND row_engine <> '' GROUP BY row_engine
"""
_SPEND_SUMS = f"""
SELECT spend_engine, sum(spend_in), sum(spend_out), sum(spend_cached), sum(spend_cost {_NEWEST_SUM}),
    bool_or(spend_est)
FROM (
    SELECT id, row_finished, spend_engine, spend_in, spend_out, spend_cached, spend_cost, spend_est
    FROM aq_jobs WHERE {_KEPT} AND spend_engine IS NOT NULL
    UNION ALL
    SELECT id, row_finished, x.key, (x.value->>'tokens_in')::numeric, (x.value->>'tokens_out')::numeric,
        (x.value->>'tokens_cached')::numeric, (x.value->>'cost_usd')::float8,
        coalesce((x.value->>'cost_estimated')::boolean, false)
    FROM aq_jobs CROSS JOIN LATERAL json_each(spend_multi::json) AS x WHERE {_KEPT} AND spend_multi IS NOT NULL
) spent GROUP BY spend_engine
"""
ROUNDS = 3  # reads of the snapshot before giving up on printing from the server (jobs keep finishing)


def read(store: Any, what: str, limit: int = 20) -> bool:
    """Print ``what`` (``status``, ``status-json``, ``insights-json`` or ``insights`` with ``limit``)
    from the server; False when it cannot (the caller then builds the rows as before)."""
    from aq_core.status import LAYOUT

    params = {"layout": LAYOUT, "limit": limit}
    last: set[str] | None = None
    for _ in range(ROUNDS):
        got = store.conn.do(lambda db, _: _snapshot(db, what, params))
        if got[0] == "ok":
            _print(store, what, limit, *got[1:])
            return True
        misses = [Entry(job_id, State(state), queued, token) for job_id, state, queued, token in got[1]]
        if last is not None and {e.id for e in misses} <= last:
            return False  # rows the server cannot sum (or keep): print them the host's way
        last = {e.id for e in misses}
        _keep_misses(store, misses)
    return False


def _snapshot(db: Any, what: str, params: dict) -> tuple:
    """In one read-only snapshot: ("misses", rows) when a finished job has no usable kept row, else
    ("ok", live entries, finished rows, extra) for ``what``."""
    with db.transaction():
        db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        misses = db.execute(_MISSES, params).fetchall()
        if misses:
            return ("misses", misses)
        if what in ("status", "status-json"):
            live = db.execute(_LIVE).fetchall()
            column = "row_cells" if what == "status" else "row_json"
            rows = db.execute(
                f"SELECT id, state, row_finished, {column} FROM aq_jobs WHERE {_KEPT}{_STATUS_ORDER}", params
            ).fetchall()
            return ("ok", live, rows, None)
        sums = (db.execute(_JOBS_SUMS, params).fetchall(), db.execute(_SPEND_SUMS, params).fetchall())
        limit = " LIMIT %(limit)s" if what == "insights" else ""
        texts = db.execute(f"SELECT row_json FROM aq_jobs WHERE {_KEPT}{_NEWEST}{limit}", params).fetchall()
        count = db.execute(f"SELECT count(*) FROM aq_jobs WHERE {_KEPT}", params).fetchone()[0]
        return ("ok", [], texts, (sums, count))


def _keep_misses(store: Any, misses: list[Entry]) -> None:
    """Compute the rows of ``misses`` (from the server's kept row, else meta) and keep them there."""
    from aq_core.records import compute_rows
    from aq_core.status import finished_cells, job_row

    compute = lambda e: job_row(e.id, e.state, store.read_meta(e.id))  # noqa: E731
    rows = compute_rows(store, misses, compute, finished_cells)
    store.keep_finished_rows(
        [(e.id, e.version, text, list(summary)) for e, (_, text, summary, _) in zip(misses, rows, strict=True)]
    )


def _print(store: Any, what: str, limit: int, live: list, rows: list, extra: Any) -> None:
    if what == "status":
        _status_table(store, live, rows)
    elif what == "status-json":
        _status_json(store, live, rows)
    else:
        sums, count = extra
        engines = rollup(*sums)
        if what == "insights-json":
            out = sys.stdout
            out.write('{"jobs": [')
            for start in range(0, len(rows), 2000):
                out.write(("," if start else "") + ",".join([text for (text,) in rows[start : start + 2000]]))
            out.write(f'], "engines": {json.dumps(engines)}}}\n')
        else:
            from aq_core.insights import render_overview

            recs = [json.loads(text) for (text,) in rows]
            print(render_overview(recs, engines, limit=limit, total=count))


def _live_rows(store: Any, live: list) -> list:
    from aq_core.status import status_rows

    entries = [Entry(job_id, State(state), queued, token) for job_id, state, queued, token in live]
    return status_rows(store, entries=entries) if entries else []


def _recent(rows: list) -> list[dict[str, Any]]:
    """Each finished job's id, state and finish time (for the daily budgets, as ``views.View.recent``)."""
    return [{"id": job_id, "state": state, "finished": finished or None} for job_id, state, finished, _ in rows]


def _status_json(store: Any, live: list, rows: list) -> None:
    from aq_core.status import engine_rows

    live_rows = _live_rows(store, live)
    engines = engine_rows(store, [*live_rows, *_recent(rows)])
    out = sys.stdout
    out.write('{"jobs": [' + ",".join([row.to_json() for row in live_rows]))
    for start in range(0, len(rows), 2000):
        comma = "," if start or live_rows else ""
        out.write(comma + ",".join([text for _, _, _, text in rows[start : start + 2000]]))
    out.write(f'], "engines": {json.dumps(engines)}}}\n')


def _status_table(store: Any, live: list, rows: list) -> None:
    import time

    from aq_core.status import HEADERS, body_lines, engine_rows, render_engines, row_cells
    from aq_core.table import column_widths, head_lines

    live_rows = _live_rows(store, live)
    if not live_rows and not rows:
        print("no jobs")
    else:
        now = time.time()
        states = {row["id"]: row["state"] for row in live_rows}
        if any(row.get("after") for row in live_rows):  # what a waiting job waits for: every job's state
            states.update((job_id, state) for job_id, state, _, _ in rows)
        pairs = [row_cells(row, now, states) for row in live_rows]
        for job_id, state, _, cells in rows:
            parts = cells.split(CELLS) if cells is not None else ()
            if len(parts) != 8:  # a separator inside a value: the cells from the row itself
                parts = _cells_again(store, job_id, state)
            pairs.append((parts[:7], parts[7]))
        widths = column_widths([cells for cells, _ in pairs], HEADERS)
        print("\n".join(head_lines(HEADERS, widths) + body_lines(pairs, widths)))
    text = render_engines(engine_rows(store, [*live_rows, *_recent(rows)]))
    if text:
        print("\n" + text)


def _cells_again(store: Any, job_id: str, state: str) -> list[str]:
    from aq_core.records import SUMMARY, Row
    from aq_core.status import table_cells

    (summary,) = store.conn.do(
        lambda db, _: db.execute("SELECT row_summary FROM aq_jobs WHERE id = %s", (job_id,)).fetchone()
    )
    cells, sub = table_cells(Row(zip(SUMMARY, json.loads(summary), strict=True)), 0.0)
    return [*cells, sub]


def rollup(jobs: list[tuple], spend: list[tuple]) -> list[dict[str, Any]]:
    """``insights.rollup``'s rows from the server's sums per engine (``_JOBS_SUMS``, ``_SPEND_SUMS``)."""
    from aq_core.insights import rollup_rows

    acc: dict[str, dict[str, Any]] = {}

    def slot(engine: str) -> dict[str, Any]:
        return acc.setdefault(
            engine,
            {"jobs": 0, "ok": 0, "failed": 0, "dur": 0.0, "ndur": 0, "est": False}
            | dict.fromkeys(("tokens_in", "tokens_out", "tokens_cached", "cost_usd")),
        )

    for engine, count, ok, failed, duration, timed in jobs:
        row = slot(engine)
        # insights.rollup adds to 0.0; the server's sum starts from the first value (equal but for -0.0)
        row.update(jobs=count, ok=ok, failed=failed, dur=0.0 + (duration or 0.0), ndur=timed)
    for engine, tokens_in, tokens_out, tokens_cached, cost, estimated in spend:
        row = slot(engine)
        for key, value in (("tokens_in", tokens_in), ("tokens_out", tokens_out), ("tokens_cached", tokens_cached)):
            row[key] = int(value) if value is not None else None
        row["cost_usd"] = cost
        row["est"] = bool(estimated)
    return rollup_rows(acc)

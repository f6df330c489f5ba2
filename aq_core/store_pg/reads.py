"""``aq status`` and ``aq insights`` printed from the rows the server keeps, for a host with no rows cache.

A host that has never read the queue (no local rows cache) does not build one: the finished jobs'
lines, JSON texts, order and ``aq insights``' per-engine sums come from the server (schema version
5's columns, ``rows.DERIVED``), in one read-only snapshot, and the host prints them. Only running
and waiting jobs are computed on the host, from their meta, as always. A finished job whose kept row
is missing or stale (it finished a moment ago, or its row was computed by another layout) is
computed here from meta first and kept on the server, then the snapshot is read again.

The output is byte for byte what the filesystem store prints for the same jobs: the server sorts as
Python does (ids in code point order: ``COLLATE "C"``), counts and sums the integers, and hands each
engine's durations and costs over as arrays, which the host sums exactly (``math.fsum``), as
``aq_core.rollup`` does: a float sum in SQL depends on the order of its terms.
"""

from __future__ import annotations

import contextlib
import json
import sys
from itertools import repeat
from operator import itemgetter
from typing import Any

from aq_core.records import SUMMARY
from aq_core.store import Entry, State
from aq_core.store_pg.rows import CELLS

_FINISHED = SUMMARY.index("finished")

# A kept row the server can print: finished, computed after the job's last move, in this layout.
_USABLE = "coalesce(row_token = op_token AND row_layout = %(layout)s, false)"
_KEPT = f"state IN ('done', 'failed') AND {_USABLE}"
_MISSES = f"SELECT id, state, queued, op_token FROM aq_jobs WHERE state IN ('done', 'failed') AND NOT {_USABLE}"
_LIVE = "SELECT id, state, queued, op_token FROM aq_jobs WHERE state IN ('inbox', 'building')"
# The finished jobs of one state in status order (oldest first: ``status.in_status_order``), a usable
# kept row's cells or JSON text, else what the host needs to compute it (in its place). One state a
# statement (failed, then done): a sort whose first key is the queue time compares in its sort slots,
# where a first key of the state's two values sent nearly every comparison to the wide row (twice the
# server's CPU at 100,000 jobs). The order names the table's columns: a CASE column is named after its
# ELSE branch's (``queued``).
_STATUS = f"""
SELECT id, state, row_finished, CASE WHEN {_USABLE} THEN {{column}} END,
    CASE WHEN {_USABLE} THEN NULL ELSE queued END, CASE WHEN {_USABLE} THEN NULL ELSE op_token END
FROM aq_jobs j WHERE state = %(state)s ORDER BY j.queued, j.id COLLATE "C"
"""
# ``insights.select``'s order: newest first (finished or 0), then id, descending.
_NEWEST = 'ORDER BY j.row_finished DESC, j.id COLLATE "C" DESC'
# ``insights.rollup``'s figures in one scan, per pair of the job's engine and the engine it spent on
# (mostly the same one: a handful of groups): a job counts under its engine, its spend under each engine
# it ran on; a fallback's spend on several engines comes back as its JSON, summed on the host. The host
# adds the pairs up per engine (``rollup``): counts and token sums are integers, durations and costs
# arrays summed with ``math.fsum``, so the figures do not depend on how the jobs were grouped. (A lateral
# join of the three kinds of spend per row cost the server twice the CPU of this plain grouping.)
_SUMS = f"""
SELECT row_engine, spend_engine, count(*), count(*) FILTER (WHERE row_result = 'ok'),
    count(*) FILTER (WHERE state = 'failed'), array_agg(row_duration) FILTER (WHERE row_duration IS NOT NULL),
    sum(spend_in), sum(spend_out), sum(spend_cached), array_agg(spend_cost) FILTER (WHERE spend_cost IS NOT NULL),
    bool_or(spend_est), array_agg(spend_multi) FILTER (WHERE spend_multi IS NOT NULL)
FROM aq_jobs WHERE {_KEPT} GROUP BY row_engine, spend_engine
"""
# Every finished job with what it sorts by: a usable kept row's JSON text, else NULL (the host
# computes it). The host sorts them: a server sorts a hundred thousand JSON texts on disk. The texts
# come as bytes (read in binary: no decoding of 80 MB into text on the host, nor encoding it again for
# the output); they are ASCII (``json``'s default), the same bytes in any encoding stdout may have.
_TEXTS = (
    f"SELECT row_finished, id, convert_to(CASE WHEN {_USABLE} THEN row_json END, 'UTF8') FROM aq_jobs"
    " WHERE state IN ('done', 'failed')"
)
_TOP = f"SELECT row_json FROM aq_jobs j WHERE {_KEPT} {_NEWEST} LIMIT %(limit)s"
_COUNTS = f"SELECT count(*), count(*) FILTER (WHERE NOT {_USABLE}) FROM aq_jobs WHERE state IN ('done', 'failed')"
ROUNDS = 3  # reads of the snapshot before giving up on printing from the server (jobs keep finishing)


def read(store: Any, what: str, limit: int = 20) -> bool:
    """Print ``what`` (``status``, ``status-json``, ``insights-json`` or ``insights`` with ``limit``)
    from the server; False when it cannot (the caller then builds the rows as before)."""
    from aq_core.status import LAYOUT

    params = {"layout": LAYOUT, "limit": limit}
    last: set[str] | None = None
    for _ in range(ROUNDS):
        got = store.conn.do(lambda db, _: _snapshot(db, store, what, params))
        if got[0] == "ok":
            _print(store, what, limit, *got[1:])
            return True
        misses = [Entry(job_id, State(state), queued, token) for job_id, state, queued, token in got[1]]
        if last is not None and {e.id for e in misses} <= last:
            return False  # rows the server cannot sum (or keep): print them the host's way
        last = {e.id for e in misses}
        _keep_misses(store, misses)
    return False


def _begin(db: Any) -> None:
    """A read-only snapshot; no JIT (its compilation costs more than these scans) and sorts in memory."""
    db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    db.execute("SET LOCAL jit = off")
    db.execute("SET LOCAL work_mem = '64MB'")


def _snapshot(db: Any, store: Any, what: str, params: dict) -> tuple:
    """In one read-only snapshot: ("ok", live entries, finished rows, extra) for ``what``, or for
    ``aq insights`` ("misses", rows) when a finished job has no usable kept row."""
    with db.transaction():
        _begin(db)
        if what in ("status", "status-json"):
            live = db.execute(_LIVE).fetchall()
            query = _STATUS.format(column="row_cells" if what == "status" else "row_json")
            rows = db.execute(query, {**params, "state": "failed"}).fetchall()
            rows += db.execute(query, {**params, "state": "done"}).fetchall()
            return ("ok", live, rows, None)
        # The sums are a scan of their own: a second connection runs them in the same snapshot meanwhile.
        sums = _Sums(store, db.execute("SELECT pg_export_snapshot()").fetchone()[0], params)
        if what == "insights-json":
            texts = db.cursor(binary=True).execute(_TEXTS, params).fetchall()
            count, missing = len(texts), None in map(itemgetter(2), texts)
        else:
            texts = db.execute(_TOP, params).fetchall()
            count, missing = db.execute(_COUNTS, params).fetchone()
        if missing:
            return ("misses", db.execute(_MISSES, params).fetchall())
        if what == "insights-json":
            # insights.select's order: newest first (finished or 0), then id, descending (ids are unique)
            texts.sort(reverse=True)
            texts = list(map(itemgetter(2), texts))
        return ("ok", [], texts, (sums.result(db, params), count))


class _Sums:
    """``_SUMS`` run on a connection of its own in an exported snapshot, in a thread."""

    def __init__(self, store: Any, snapshot: str, params: dict) -> None:
        import threading

        self.rows: list | None = None
        self.thread = threading.Thread(target=self._run, args=(store, snapshot, params), daemon=True)
        self.thread.start()

    def _run(self, store: Any, snapshot: str, params: dict) -> None:
        from psycopg import sql

        # Any failure (no connection to spare, say): the first connection runs them (``result``).
        with contextlib.suppress(Exception), store.conn.connect("reads") as db, db.transaction():
            _begin(db)
            db.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
            self.rows = db.execute(_SUMS, params).fetchall()

    def result(self, db: Any, params: dict) -> list:
        self.thread.join()
        return self.rows if self.rows is not None else db.execute(_SUMS, params).fetchall()


def _keep_misses(store: Any, misses: list[Entry]) -> list[tuple]:
    """Compute the rows of ``misses`` (from the server's kept row, else meta) and keep them there;
    return ``records.compute_rows``' ``(key, json_text, summary, cells)`` for each."""
    from aq_core.records import compute_rows
    from aq_core.status import finished_cells, job_row

    compute = lambda e: job_row(e.id, e.state, store.read_meta(e.id))  # noqa: E731
    rows = compute_rows(store, misses, compute, finished_cells)
    with contextlib.suppress(Exception):  # a role that may only read: these are printed all the same
        store.keep_finished_rows(
            [(e.id, e.version, text, list(summary)) for e, (_, text, summary, _) in zip(misses, rows, strict=True)]
        )
    return rows


def _print(store: Any, what: str, limit: int, live: list, rows: list, extra: Any) -> None:
    if what in ("status", "status-json"):
        _fill_misses(store, rows, cells=what == "status")
        (_status_table if what == "status" else _status_json)(store, live, rows)
        return
    sums, count = extra
    engines = rollup(sums)
    if what == "insights-json":
        from aq_core.views import stdout_takes_bytes

        out = sys.stdout
        out.write('{"jobs": [')
        out.flush()
        binary = out.buffer if stdout_takes_bytes() else None
        for start in range(0, len(rows), 2000):
            piece = (b"," if start else b"") + b",".join(rows[start : start + 2000])
            if binary is not None:
                binary.write(piece)
            else:
                out.write(piece.decode())
        if binary is not None:
            binary.flush()
        out.write(f'], "engines": {json.dumps(engines)}}}\n')
    else:
        from aq_core.insights import render_overview

        recs = [json.loads(text) for (text,) in rows]
        print(render_overview(recs, engines, limit=limit, total=count))


def _fill_misses(store: Any, rows: list, cells: bool) -> None:
    """Put the rows of finished jobs the server had no usable row for in their places (computed here)."""
    queued = list(map(itemgetter(4), rows))
    if queued.count(None) == len(queued):
        return
    at = [i for i, value in enumerate(queued) if value is not None]
    misses = [Entry(rows[i][0], State(rows[i][1]), rows[i][4], rows[i][5]) for i in at]
    for i, (_, text, summary, kept) in zip(at, _keep_misses(store, misses), strict=True):
        finished = summary[_FINISHED]
        rows[i] = (rows[i][0], rows[i][1], finished, kept.replace("\0", CELLS) if cells else text, None, None)


def _live_rows(store: Any, live: list) -> list:
    from aq_core.status import status_rows

    entries = [Entry(job_id, State(state), queued, token) for job_id, state, queued, token in live]
    return status_rows(store, entries=entries) if entries else []


def _recent(live_rows: list, rows: list) -> Any:
    """The live rows, then each finished job's id, state and finish time (for the daily budgets, as
    ``views.View.recent``), made only when read (``status.engine_rows`` reads them only for budgets)."""
    import itertools

    return itertools.chain(live_rows, ({"id": r[0], "state": r[1], "finished": r[2] or None} for r in rows))


def _status_json(store: Any, live: list, rows: list) -> None:
    from aq_core.status import engine_rows

    live_rows = _live_rows(store, live)
    engines = engine_rows(store, _recent(live_rows, rows))
    out = sys.stdout
    out.write('{"jobs": [' + ",".join([row.to_json() for row in live_rows]))
    for start in range(0, len(rows), 2000):
        comma = "," if start or live_rows else ""
        out.write(comma + ",".join([row[3] for row in rows[start : start + 2000]]))
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
            states.update((row[0], row[1]) for row in rows)
        pairs = [row_cells(row, now, states) for row in live_rows]
        parts = _finished_parts(store, rows)
        widths = column_widths([cells for cells, _ in pairs], HEADERS)
        for i, width in enumerate(widths):
            if parts:
                widths[i] = max(width, *map(len, map(itemgetter(i), parts)))
        print("\n".join(head_lines(HEADERS, widths) + body_lines(pairs, widths) + _finished_lines(parts, widths)))
    text = render_engines(engine_rows(store, _recent(live_rows, rows)))
    if text:
        print("\n" + text)


def _finished_parts(store: Any, rows: list) -> list[list[str]]:
    """Each finished row's 7 cells and sub-line, split from its kept cells by C-level maps (a Python
    loop over every row cost about as much as the rest of the read)."""
    texts = list(map(itemgetter(3), rows))
    if None in texts:  # a separator inside a value: no kept cells (cells from the row itself, below)
        texts = [CELLS if text is None else text for text in texts]
    parts = list(map(str.split, texts, repeat(CELLS)))
    if set(map(len, parts)) != {8}:
        for i, cells in enumerate(parts):
            if len(cells) != 8:
                parts[i] = _cells_again(store, rows[i][0])
    return parts


def _finished_lines(parts: list[list[str]], widths: list[int]) -> list[str]:
    """``status.body_lines`` of the finished rows' ``parts``: the extra eighth value (the sub-line) is
    ignored by the format, so no row is sliced."""
    from aq_core.table import row_format

    form = row_format(widths)
    out: list[str] = []
    append = out.append
    for cells in parts:
        append(form(*cells).rstrip())
        if cells[7]:
            append("  └ " + cells[7])
    return out


def _cells_again(store: Any, job_id: str) -> list[str]:
    from aq_core.records import Row
    from aq_core.status import table_cells

    (summary,) = store.conn.do(
        lambda db, _: db.execute("SELECT row_summary FROM aq_jobs WHERE id = %s", (job_id,)).fetchone()
    )
    cells, sub = table_cells(Row(zip(SUMMARY, json.loads(summary), strict=True)), 0.0)
    return [*cells, sub]


def rollup(sums: list[tuple]) -> list[dict[str, Any]]:
    """``insights.rollup``'s rows from the server's figures per pair of engines (``_SUMS``), made into
    ``aq_core.rollup``'s tally (a token sum with its count of jobs that had one: 1 stands for "some")."""
    from aq_core.rollup import TOKENS, finish

    acc: dict[str, dict[str, Any]] = {}

    def slot(engine: str) -> dict[str, Any]:
        got = acc.get(engine)
        if got is None:
            got = acc[engine] = {"jobs": 0, "ok": 0, "failed": 0, "durs": [], "costs": [], "est": 0, "tokens": [0] * 6}
        return got

    def spend(engine: str, tokens: tuple, cost: list, est: bool) -> None:
        into = slot(engine)
        for i, total in enumerate(tokens):
            if total is not None:
                into["tokens"][2 * i] = 1
                into["tokens"][2 * i + 1] += int(total)
        into["costs"] += cost
        into["est"] = int(into["est"] or bool(est))

    for engine, spent_on, count, ok, failed, durations, tin, tout, tcached, costs, est, multi in sums:
        if engine:  # a file that never validated ran on no engine
            into = slot(engine)
            into["jobs"] += count
            into["ok"] += ok
            into["failed"] += failed
            into["durs"] += durations or []
        if spent_on is not None:
            spend(spent_on, (tin, tout, tcached), costs or [], est)
        for text in multi or ():
            for name, values in json.loads(text).items():
                cost = values.get("cost_usd")
                spend(
                    name, tuple(map(values.get, TOKENS)), [] if cost is None else [cost], values.get("cost_estimated")
                )
    return finish(acc)

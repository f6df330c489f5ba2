"""Finished jobs' status rows kept on the server (schema versions 4 and 5), read by hosts without a cache.

A finished job's row (its JSON text and the ``records.SUMMARY`` figures as a JSON array) is kept in
its ``aq_jobs`` row with the ``op_token`` of the transition it was computed after (``row_token``).
Any later transition changes ``op_token``, so a kept row is served only while the job has not moved
since; a stale or missing one is computed from meta by the reader, who keeps it for the next.
Version 5 keeps beside it what the server needs to print and sum it (``derived``): the status
table's cells under their layout tag, and typed figures for ``aq insights``' order and rollup
(``store_pg.reads``).

Writes here commit with ``synchronous_commit = off``: a row lost in a server crash is only a cache
entry lost (the next reader computes it from meta again). No job, state, meta line or attempt count
depends on it, so no crash guarantee (SPEC §7, §11) rests on these commits.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from typing import Any

from aq_core.store import Entry, State
from aq_core.store_pg.connection import Connection
from aq_core.store_pg.lockrows import NO_WAIT

FINISHED = ("done", "failed")
# Above this many ids one query over every kept row is cheaper than sending the ids.
_ALL_ABOVE = 2000
FILL_BATCH = 2000  # jobs whose meta the migration to version 4 holds in memory at once
#: Version 5's columns, computed from a row's summary by ``derived`` (in this order).
DERIVED = (
    "row_layout",
    "row_cells",
    "row_finished",
    "row_engine",
    "row_result",
    "row_duration",
    "spend_engine",
    "spend_in",
    "spend_out",
    "spend_cached",
    "spend_cost",
    "spend_est",
    "spend_multi",
)
_SET_DERIVED = ", ".join(f"{name} = %s" for name in DERIVED)
_SET_FROM_KEPT = ", ".join(f"{name} = k.{name}" for name in DERIVED)
_KEEP_ONE = f"""
UPDATE aq_jobs SET row_token = op_token, row_json = %s, row_summary = %s, {_SET_DERIVED}
FROM {NO_WAIT}
WHERE id = %s AND state = %s AND op_token = %s
"""
_KEPT_TABLE = (
    "CREATE TEMP TABLE aq_kept (id text, token text, row_json text, row_summary text, row_layout text,"
    " row_cells text, row_finished float8, row_engine text, row_result text, row_duration float8,"
    " spend_engine text, spend_in numeric, spend_out numeric, spend_cached numeric, spend_cost float8,"
    " spend_est boolean, spend_multi text) ON COMMIT DROP"
)
_COPY_KEPT = f"COPY aq_kept (id, token, row_json, row_summary, {', '.join(DERIVED)}) FROM STDIN"
_NONE = (None,) * len(DERIVED)
CELLS = "\x1f"  # between a kept row's cells (row_cells is None when a value holds one)
_TOKENS = ("tokens_in", "tokens_out", "tokens_cached")
_SPENT = frozenset((*_TOKENS, "cost_usd", "cost_estimated"))  # what ``insights.job_record`` puts in by_engine

# The finished jobs' ids, queued stamps and move tokens, by state, as arrays (decoded in C).
FINISHED_COLUMNS = """
SELECT array_agg(id) FILTER (WHERE state = 'done'), array_agg(queued) FILTER (WHERE state = 'done'),
    array_agg(op_token) FILTER (WHERE state = 'done'), array_agg(id) FILTER (WHERE state = 'failed'),
    array_agg(queued) FILTER (WHERE state = 'failed'), array_agg(op_token) FILTER (WHERE state = 'failed')
FROM aq_jobs
"""
# The same, and the waiting and running jobs' entries (a few), from the same scan.
_LIVE = "state IN ('inbox', 'building')"
STATUS_COLUMNS = FINISHED_COLUMNS.replace(
    "\nFROM aq_jobs",
    "".join(f", array_agg({name}) FILTER (WHERE {_LIVE})" for name in ("id", "state", "queued", "op_token"))
    + "\nFROM aq_jobs",
)


def listing(in_table_order: Any, live: bool = False) -> Any:
    """``views.listing_columns`` of the finished jobs (``PgStore.finished_columns``), from the arrays of
    one query over the table in its order (``in_table_order``); with ``live``, (the waiting and running
    jobs' entries, those columns): ``PgStore.status_columns``, ``scan()`` in one query without an object
    per finished job."""
    row = in_table_order(STATUS_COLUMNS if live else FINISHED_COLUMNS, binary=True)[0]
    done_ids, done_queued, done_tokens, failed_ids, failed_queued, failed_tokens = row[:6]
    done_ids, failed_ids = done_ids or [], failed_ids or []
    columns = [
        [0] * len(done_ids) + [1] * len(failed_ids),
        done_ids + failed_ids,
        (done_queued or []) + (failed_queued or []),
        (done_tokens or []) + (failed_tokens or []),
    ]
    if not live:
        return columns
    ids, states, queued, tokens = (values or [] for values in row[6:])
    entries = [Entry(*entry) for entry in zip(ids, map(State, states), queued, tokens, strict=True)]
    return entries, columns


def _number(value: Any, kind: type) -> bool:
    return value is None or (type(value) is kind or (kind is float and type(value) is int))


def derived(summary: list) -> tuple:
    """Version 5's columns for a row's ``summary`` (``DERIVED``'s order); all None (no layout: the row
    is computed on the host) for values the server could not sum exactly as ``insights.rollup`` does."""
    from aq_core.records import SUMMARY, Row
    from aq_core.status import LAYOUT, finished_cells

    row = Row(zip(SUMMARY, summary, strict=True))
    get = row.get
    finished, duration, engine, result = get("finished"), get("duration_s"), get("engine"), get("result")
    spend = get("by_engine") or {}
    if not (_number(finished, float) and _number(duration, float) and isinstance(spend, dict)):
        return _NONE
    for values in spend.values():
        if not isinstance(values, dict) or not _SPENT.issuperset(values) or not _number(values.get("cost_usd"), float):
            return _NONE
        if not all(_number(values.get(key), int) for key in _TOKENS):
            return _NONE
    single: tuple = (None,) * 6
    multi = None
    if len(spend) == 1:
        ((name, values),) = spend.items()
        tokens = tuple(values.get(key) for key in _TOKENS)
        single = (name, *tokens, values.get("cost_usd"), bool(values.get("cost_estimated")))
    elif spend:
        multi = json.dumps(spend, allow_nan=False)
    cells = finished_cells(row)  # NUL-joined: a text column holds none, so another separator (CELLS)
    return (
        LAYOUT,
        cells.replace("\0", CELLS) if CELLS not in cells else None,
        float(finished or 0),
        engine if isinstance(engine, str) else None,
        result if isinstance(result, str) else None,
        duration,
        *single,
        multi,
    )


def fetch(conn: Connection, entries: Iterable[Entry]) -> dict[str, tuple[str, list]]:
    """The kept rows of finished ``entries`` whose version is the kept row's: id -> (JSON text, summary)."""
    wanted = {e.id: e.version for e in entries if e.version is not None and e.state.value in FINISHED}
    if not wanted:
        return {}
    if len(wanted) > _ALL_ABOVE:
        sql = (
            "SELECT id, row_token, row_json, row_summary FROM aq_jobs"
            " WHERE state IN ('done', 'failed') AND row_token = op_token"
        )
        params: tuple = ()
    else:
        sql = (
            "SELECT id, row_token, row_json, row_summary FROM aq_jobs"
            " WHERE id = ANY(%s::text[]) AND row_token = op_token"
        )
        params = (list(wanted),)
    rows = conn.do(lambda db, _: db.execute(sql, params).fetchall())
    hits = [(job_id, text, summary) for job_id, token, text, summary in rows if wanted.get(job_id) == token]
    if not hits:
        return {}
    # One decode of every summary: a hundred thousand small json.loads calls cost three times more.
    summaries = json.loads("[" + ",".join(summary for _, _, summary in hits) + "]")
    return {job_id: (text, summary) for (job_id, text, _), summary in zip(hits, summaries, strict=True)}


def _async(db: Any) -> None:
    db.execute("SET LOCAL synchronous_commit TO off")  # a cache entry: see the module's docstring


def keep_one(conn: Connection, job_id: str, state: str, token: str, text: str, summary: list, lock: Any = None) -> None:
    """Keep one finished job's row, computed after the transition that set ``token`` (else nothing).

    Given the job's lock (``leases.PgLock``), the row goes in the statement of the lock's release, as
    the attempt (or the recovery) that moved the job ends: a round trip a job less.
    """
    params = (text, json.dumps(summary, allow_nan=False), *_derived_or_none(summary), job_id, state, token)
    if lock is not None:
        lock.with_release = (_KEEP_ONE, params)
        return
    conn.do(lambda db, _: db.execute(_KEEP_ONE, params), retry_for=1.0)  # one statement, NO_WAIT


def keep_many(conn: Connection, rows: Iterable[tuple[str, object, str, list]]) -> None:
    """Keep rows (id, version, JSON text, summary) computed by a reader; a row whose job moved is dropped."""
    data = [
        (job_id, version, text, json.dumps(summary, allow_nan=False), *_derived_or_none(summary))
        for job_id, version, text, summary in rows
    ]
    if not data:
        return

    def op(db: Any, _: bool) -> None:
        with db.transaction():
            _async(db)
            db.execute(_KEPT_TABLE)
            with db.cursor().copy(_COPY_KEPT) as copy:
                for row in data:
                    copy.write_row(row)
            db.execute(
                "UPDATE aq_jobs j SET row_token = k.token, row_json = k.row_json, row_summary = k.row_summary,"
                f" {_SET_FROM_KEPT} FROM aq_kept k"
                " WHERE j.id = k.id AND j.op_token = k.token AND j.state IN ('done', 'failed')"
            )
        if len(data) >= SETTLE_ABOVE:
            settle(db)

    conn.do(op, retry_for=1.0)


SETTLE_ABOVE = 10_000  # rows kept at once (``aq store migrate``) after which the table is vacuumed


def settle(db: Any) -> None:
    """``VACUUM (ANALYZE)`` ``aq_jobs`` after a bulk write (outside a transaction): the next reads scan
    no dead row versions and set no hint bits, and the planner knows the kept rows. Skipped by the
    server (a warning) for a role that does not own the table."""
    with contextlib.suppress(Exception):
        db.execute("VACUUM (ANALYZE) aq_jobs")


def fill(db: Any) -> int:
    """Compute and keep the row of every finished job that has none (the migration to version 4).

    Runs on ``db`` inside the caller's transaction, ``FILL_BATCH`` jobs at a time (their meta in
    memory, not every job's); returns how many rows were filled.
    """
    from aq_core.meta import Meta
    from aq_core.records import SUMMARY
    from aq_core.status import job_row
    from aq_core.store import State

    jobs = db.execute(
        "SELECT id, state, op_token FROM aq_jobs WHERE state IN ('done', 'failed')"
        " AND row_token IS DISTINCT FROM op_token ORDER BY id"
    ).fetchall()
    encode = json.JSONEncoder(allow_nan=False).encode
    db.execute("CREATE TEMP TABLE aq_kept (id text, token text, row_json text, row_summary text) ON COMMIT DROP")
    for start in range(0, len(jobs), FILL_BATCH):
        part = jobs[start : start + FILL_BATCH]
        pairs: dict[str, list[tuple[str, str]]] = {}
        rows = db.execute(
            "SELECT job_id, key, value FROM aq_meta WHERE job_id = ANY(%s::text[]) ORDER BY job_id, seq",
            ([job_id for job_id, _, _ in part],),
        )
        for job_id, key, value in rows:
            pairs.setdefault(job_id, []).append((key, value))
        with db.cursor().copy("COPY aq_kept (id, token, row_json, row_summary) FROM STDIN") as copy:
            for job_id, state, token in part:
                row = job_row(job_id, State(state), Meta(pairs.get(job_id, [])))
                copy.write_row((job_id, token, encode(row), encode([row.get(k) for k in SUMMARY])))
    db.execute(
        "UPDATE aq_jobs j SET row_token = k.token, row_json = k.row_json, row_summary = k.row_summary"
        " FROM aq_kept k WHERE j.id = k.id AND j.op_token = k.token"
    )
    return len(jobs)


def fill_derived(db: Any) -> int:
    """Compute version 5's columns for every kept row that lacks them (the migration to version 5).

    Runs on ``db`` inside the caller's transaction, ``FILL_BATCH`` rows at a time; returns how many."""
    ids = [
        job_id
        for (job_id,) in db.execute(
            "SELECT id FROM aq_jobs WHERE row_summary IS NOT NULL AND row_layout IS NULL ORDER BY id"
        ).fetchall()
    ]
    db.execute(
        "CREATE TEMP TABLE aq_derived (id text, "
        + ", ".join(f"{name} {kind}" for name, kind in zip(DERIVED, _KINDS, strict=True))
        + ") ON COMMIT DROP"
    )
    for start in range(0, len(ids), FILL_BATCH):
        part = db.execute(
            "SELECT id, row_summary FROM aq_jobs WHERE id = ANY(%s::text[])", (ids[start : start + FILL_BATCH],)
        ).fetchall()
        summaries = json.loads("[" + ",".join(summary for _, summary in part) + "]")
        with db.cursor().copy(f"COPY aq_derived (id, {', '.join(DERIVED)}) FROM STDIN") as copy:
            for (job_id, _), summary in zip(part, summaries, strict=True):
                copy.write_row((job_id, *_derived_or_none(summary)))
    db.execute(f"UPDATE aq_jobs j SET {_SET_FROM_KEPT} FROM aq_derived k WHERE j.id = k.id")
    return len(ids)


_KINDS = ("text", "text", "float8", "text", "text", "float8", "text", "numeric", "numeric", "numeric")
_KINDS += ("float8", "boolean", "text")


def _derived_or_none(summary: Any) -> tuple:
    from aq_core.records import SUMMARY

    if not isinstance(summary, list) or len(summary) != len(SUMMARY):
        return _NONE
    return derived(summary)

"""Finished jobs' status rows kept on the server (schema version 4): a host's first read fetches them.

A finished job's row (its JSON text and the ``records.SUMMARY`` figures as a JSON array) is kept in
its ``aq_jobs`` row with the ``op_token`` of the transition it was computed after (``row_token``).
Any later transition changes ``op_token``, so a kept row is served only while the job has not moved
since; a stale or missing one is computed from meta by the reader, who keeps it for the next.

Writes here commit with ``synchronous_commit = off``: a row lost in a server crash is only a cache
entry lost (the next reader computes it from meta again). No job, state, meta line or attempt count
depends on it, so no crash guarantee (SPEC §7, §11) rests on these commits.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from aq_core.store import Entry
from aq_core.store_pg.connection import Connection

FINISHED = ("done", "failed")
# Above this many ids one query over every kept row is cheaper than sending the ids.
_ALL_ABOVE = 2000
FILL_BATCH = 2000  # jobs whose meta the migration to version 4 holds in memory at once
_KEEP_ONE = """
UPDATE aq_jobs SET row_token = op_token, row_json = %s, row_summary = %s
WHERE id = %s AND state = %s AND op_token = %s
"""


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


def keep_one(conn: Connection, job_id: str, state: str, token: str, text: str, summary: list) -> None:
    """Keep one finished job's row, computed after the transition that set ``token`` (else nothing)."""
    params = (text, json.dumps(summary, allow_nan=False), job_id, state, token)

    def op(db: Any, _: bool) -> None:
        with db.pipeline(), db.transaction():  # one round trip: BEGIN, SET, UPDATE, COMMIT
            _async(db)
            db.execute(_KEEP_ONE, params)

    conn.do(op, retry_for=1.0)


def keep_many(conn: Connection, rows: Iterable[tuple[str, object, str, list]]) -> None:
    """Keep rows (id, version, JSON text, summary) computed by a reader; a row whose job moved is dropped."""
    data = [(job_id, version, text, json.dumps(summary, allow_nan=False)) for job_id, version, text, summary in rows]
    if not data:
        return

    def op(db: Any, _: bool) -> None:
        with db.transaction():
            _async(db)
            db.execute(
                "CREATE TEMP TABLE aq_kept (id text, token text, row_json text, row_summary text) ON COMMIT DROP"
            )
            with db.cursor().copy("COPY aq_kept (id, token, row_json, row_summary) FROM STDIN") as copy:
                for row in data:
                    copy.write_row(row)
            db.execute(
                "UPDATE aq_jobs j SET row_token = k.token, row_json = k.row_json, row_summary = k.row_summary"
                " FROM aq_kept k WHERE j.id = k.id AND j.op_token = k.token AND j.state IN ('done', 'failed')"
            )

    conn.do(op, retry_for=1.0)


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

"""The statements that append a job's meta lines (``aq_meta``) and return them with a move.

Every line carries its batch's token, so a batch sent again (a retry after an unknown outcome, or
lines committed without waiting for the disk and committed again with the next durable append) is
inserted once.
"""

from __future__ import annotations

from aq_core.store_pg.connection import Connection, Prepared
from aq_core.store_pg.lockrows import NO_WAIT
from aq_core.store_pg.readahead import StoreAhead

# A job's lines in order, read a few times an attempt: through libpq (``Connection.rows``).
READ_META = Prepared("aq_read_meta", "SELECT key, value FROM aq_meta WHERE job_id = $1 ORDER BY seq")
# The same for a job this store's attempt holds, with the records of the engine its last ``engine``
# line names (the attempt's end reads both, one after the other): rows (1 for meta, 2 for the engine's).
READ_META_AND_ENGINE = Prepared(
    "aq_read_meta_engine",
    "SELECT 1, seq, key, value FROM aq_meta WHERE job_id = $1"
    " UNION ALL SELECT 2, seq, key, value FROM aq_engine_meta WHERE engine ="
    " (SELECT value FROM aq_meta WHERE job_id = $1 AND key = 'engine' ORDER BY seq DESC LIMIT 1)"
    " ORDER BY 1, 2",
)

INSERT_META = """
INSERT INTO aq_meta (job_id, key, value, batch)
SELECT %s, t.k, t.v, %s FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS t(k, v, n) ORDER BY t.n
"""
# Batches (each its lines' batch token) inserted once each, in order: a retry, or lines committed
# again after a commit that did not wait for the disk, never doubles a line. ``{source}``: NO_WAIT.
_BATCHES = """
INSERT INTO aq_meta (job_id, key, value, batch)
SELECT %(id)s, t.k, t.v, t.b FROM unnest(%(keys)s::text[], %(values)s::text[], %(batches)s::text[])
    WITH ORDINALITY AS t(k, v, b, n){source}
WHERE NOT EXISTS (SELECT 1 FROM aq_meta m WHERE m.job_id = %(id)s AND m.batch = t.b)
ORDER BY t.n
"""
INSERT_ONCE = _BATCHES.format(source="")
# A durable append that also returns the job's count of lines after it (``coord.meta_version``'s value).
INSERT_ONCE_COUNTED = (
    f"WITH added AS ({INSERT_ONCE} RETURNING 1)"
    " SELECT (SELECT count(*) FROM aq_meta WHERE job_id = %(id)s) + (SELECT count(*) FROM added)"
)
INSERT_ONCE_NO_WAIT = _BATCHES.format(source=" CROSS JOIN " + NO_WAIT)
# A move into done/ or failed/ returns the job's meta as of the move, in the same round trip.
WITH_META = (
    ", (SELECT array_agg(key ORDER BY seq) FROM aq_meta WHERE job_id = %(id)s),"
    " (SELECT array_agg(value ORDER BY seq) FROM aq_meta WHERE job_id = %(id)s)"
)
# With ``added AS (INSERT_ONCE RETURNING seq, key, value)``: the lines a move's statement added.
ADDED = ", (SELECT array_agg(key ORDER BY seq) FROM added), (SELECT array_agg(value ORDER BY seq) FROM added)"


def batches_params(job_id: str, batches: list[tuple[str, list, list]]) -> dict:
    """``INSERT_ONCE``'s parameters for (batch, keys, values) batches, in order."""
    keys: list = []
    values: list = []
    tokens: list = []
    for batch, batch_keys, batch_values in batches:
        keys += batch_keys
        values += batch_values
        tokens += [batch] * len(batch_keys)
    return {"id": job_id, "keys": keys, "values": values, "batches": tokens}


def read_with_engine(conn: Connection, job_id: str, ahead: StoreAhead) -> list[tuple[str, str]]:
    """The job's meta lines (``READ_META_AND_ENGINE``); the records of the engine its last ``engine``
    line names are kept for this thread's next read of that engine (``StoreAhead.engine_read``)."""
    rows = conn.do(lambda db, _: conn.rows(db, READ_META_AND_ENGINE, [job_id]))
    meta = [(key, value) for part, _, key, value in rows if part == "1"]
    engine = next((value for key, value in reversed(meta) if key == "engine"), None)
    ahead.engine_read(engine, [(key, value) for part, _, key, value in rows if part == "2"])
    return meta

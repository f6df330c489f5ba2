"""Many waiting jobs' rows and meta read in one round trip per chunk (``PgStore.prefetched``).

The picker reads each new waiting job's meta, version and file; each of those was a round trip of its
own. Only one chunk of rows is held at a time, so memory stays small however long the queue.
"""

from __future__ import annotations

from aq_core.store_pg.connection import Connection

# Many jobs' rows and meta in one round trip (``PgStore.prefetched``): the picker reads each new
# waiting job's meta, version and file, and each of those was a round trip of its own.
_PREFETCH = """
SELECT j.id, j.state, j.rev, octet_length(j.data), CASE WHEN %(data)s THEN j.data END, m.k, m.v,
    j.queued, j.op_token
FROM aq_jobs j LEFT JOIN LATERAL (
    SELECT array_agg(key ORDER BY seq) AS k, array_agg(value ORDER BY seq) AS v FROM aq_meta WHERE job_id = j.id
) m ON true
"""
PREFETCH = _PREFETCH + "WHERE j.id = ANY(%(ids)s::text[])"
# One job (the pick's last look before its claim, every job): a plan of its own that the server
# keeps. With an array, PostgreSQL costs its generic plan above a custom one and plans every call.
PREFETCH_ONE = _PREFETCH + "WHERE j.id = %(id)s"
PREFETCH_CHUNK = 500
# A job read ahead: (state, version, file bytes or None, meta pairs, queued, last transition's token)
Ahead = tuple[str, tuple, "bytes | None", tuple, float, "str | None"]


class ReadAhead:
    """The rows of ``PgStore.prefetched``: one chunk of jobs held at a time (memory stays small)."""

    def __init__(self, conn: Connection, ids: list[str], data: bool) -> None:
        self.conn, self.ids, self.data = conn, ids, data
        self.place = {job_id: n for n, job_id in enumerate(ids)}
        self.rows: dict[str, Ahead] = {}
        self.next = 0  # ids before this were read (their chunk is gone or going)
        if ids:
            self._fetch(0)

    def __bool__(self) -> bool:
        return bool(self.ids)

    def get(self, job_id: str) -> Ahead | None:
        row = self.rows.get(job_id)
        if row is None and self.place.get(job_id, -1) >= self.next:
            self._fetch(self.place[job_id])
            row = self.rows.get(job_id)
        return row

    def pop(self, job_id: str, default: object = None) -> None:
        self.rows.pop(job_id, None)

    def _fetch(self, start: int) -> None:
        params = {"ids": self.ids[start : start + PREFETCH_CHUNK], "data": self.data}
        statement = PREFETCH
        if len(params["ids"]) == 1:
            statement, params["id"] = PREFETCH_ONE, params["ids"][0]
        found = self.conn.do(lambda conn, _: conn.execute(statement, params).fetchall())
        self.next = start + len(params["ids"])
        self.rows = {}
        for job_id, state, rev, size, body, keys, values, queued, token in found:
            meta = tuple(zip(keys, values, strict=True)) if keys else ()
            self.rows[job_id] = (state, (rev, size), None if body is None else bytes(body), meta, queued, token)

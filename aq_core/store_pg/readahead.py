"""The PostgreSQL store's reads ahead (``PgStore.prefetched`` and the rest): answers read in an
earlier round trip, each thread's own, each forgotten when that thread writes to the job.

- many waiting jobs' rows and meta in one round trip per chunk (``prefetched``): the picker reads each
  new waiting job's meta, version and file; only one chunk is held at a time, so memory stays small;
- the chosen job's row read in the statement that takes its lock (``LOCK_READING``), for the pick's
  last look before the claim (``still_waiting``);
- every engine's records and the waiting jobs, read in one statement (``engines_listed``, for
  ``PgEngineRecords.prefetched``): the records for the pick's reads of them within its block, the
  waiting jobs for the pick's next listing of the inbox;
- the job's meta a move into ``done/`` or ``failed/`` returned, for the first read after it;
- one engine's records read with the meta of a job whose attempt this store holds (the attempt's
  end reads the meta, then the engine's records: ``PgStore.read_meta``), for that engine's next read;
- the job's meta as the claim's statement found it (``claimed``), for the first read of it by any
  thread: the runner claims on its main thread and the attempt reads the meta on a worker.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator

from aq_core.store import Entry, State
from aq_core.store_pg.connection import Connection
from aq_core.store_pg.lockrows import TAKE_LOCK

_COLUMNS = """j.id, j.state, j.rev, octet_length(j.data), {data}, m.k, m.v, j.queued, j.op_token
FROM aq_jobs j LEFT JOIN LATERAL (
    SELECT array_agg(key ORDER BY seq) AS k, array_agg(value ORDER BY seq) AS v FROM aq_meta WHERE job_id = j.id
) m ON true
"""
_PREFETCH = "SELECT " + _COLUMNS.format(data="CASE WHEN %(data)s THEN j.data END")
PREFETCH = _PREFETCH + "WHERE j.id = ANY(%(ids)s::text[])"
# One job (the pick's last look before its claim, every job): a plan of its own that the server
# keeps. With an array, PostgreSQL costs its generic plan above a custom one and plans every call.
PREFETCH_ONE = _PREFETCH + "WHERE j.id = %(id)s"
PREFETCH_CHUNK = 500
# A job's lock taken without waiting for the disk (``lockrows.TAKE_LOCK_OR_HOLDER``'s columns), and
# when taken the job's row as ``PREFETCH_ONE`` reads it (no file): the read that followed the lock,
# in its round trip. It reads the statement's snapshot; the claim checks the job's state itself.
LOCK_READING = f"""
WITH taken AS ({TAKE_LOCK[1]})
SELECT true, t.token, NULL, NULL, NULL, a.* FROM taken t LEFT JOIN LATERAL (
    SELECT {_COLUMNS.format(data="NULL::bytea")} WHERE j.id = %(job)s) a ON true
UNION ALL
SELECT false, token, host, pid, pidstart, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM aq_locks WHERE name = %(name)s AND NOT EXISTS (SELECT 1 FROM taken)
"""
# Every engine's records and the waiting jobs, in one statement (a round trip a pick less), as
# arrays psycopg decodes in C; and the inbox's counter in the same snapshot (``listed_token``).
_ENGINES_AND_INBOX = """
SELECT e.engines, e.keys, e.vals, i.ids, i.queued, i.tokens,
    (SELECT value FROM aq_counters WHERE name = 'inbox')
FROM (SELECT array_agg(engine ORDER BY engine, seq), array_agg(key ORDER BY engine, seq),
        array_agg(value ORDER BY engine, seq) FROM aq_engine_meta) AS e(engines, keys, vals),
    (SELECT array_agg(id), array_agg(queued), array_agg(op_token) FROM aq_jobs WHERE state = 'inbox')
        AS i(ids, queued, tokens)
"""
# A job read ahead: (state, version, file bytes or None, meta pairs, queued, last transition's token)
Ahead = tuple[str, tuple, "bytes | None", tuple, float, "str | None"]


class ReadAhead:
    """The rows of ``PgStore.prefetched``: one chunk of jobs held at a time (memory stays small);
    ``found``: the rows already read (the one job read with its lock), nothing to fetch."""

    def __init__(self, conn: Connection, ids: list[str], data: bool, found: list[tuple] | None = None) -> None:
        self.conn, self.ids, self.data = conn, ids, data
        self.place = {job_id: n for n, job_id in enumerate(ids)}
        self.rows: dict[str, Ahead] = {}
        self.next = 0  # ids before this were read (their chunk is gone or going)
        if found is not None:
            self.next = len(ids)
            self._keep(found)
        elif ids:
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
        self._keep(found)

    def _keep(self, found: list[tuple]) -> None:
        self.rows = {}
        for job_id, state, rev, size, body, keys, values, queued, token in found:
            meta = tuple(zip(keys, values, strict=True)) if keys else ()
            self.rows[job_id] = (state, (rev, size), None if body is None else bytes(body), meta, queued, token)


class StoreAhead:
    """One store's reads ahead; each thread sees only its own (``threading.local``)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        # .rows: a ReadAhead; .locked: (job, its row or None) read with its lock; .inbox: the waiting
        # jobs as arrays, .token: the inbox's counter read with them; .moved: (job, meta pairs) a move
        # returned; .records: engine -> its rows, in ``engines_listed``; .engine: (engine, its rows)
        # read with a job's meta
        self.local = threading.local()
        # job -> its meta lines (JSON) at this store's claim: the job's, not a thread's (see above)
        self.at_claim: dict[str, str] = {}

    @contextlib.contextmanager
    def prefetched(self, job_ids: Iterable[str], data: bool) -> Iterator[None]:
        """``PgStore.prefetched``: one job read with its lock a moment ago (no file) is not read again."""
        ids = list(dict.fromkeys(job_ids))
        locked, self.local.locked = getattr(self.local, "locked", None), None
        found = [locked[1]] if locked is not None and not data and ids == [locked[0]] else None
        previous = getattr(self.local, "rows", None)
        self.local.rows = ReadAhead(self.conn, ids, data, found)
        try:
            yield
        finally:
            self.local.rows = previous

    def get(self, job_id: str) -> Ahead | None:
        rows = getattr(self.local, "rows", None)
        return rows.get(job_id) if rows else None

    def version(self, job_id: str, state: State) -> tuple[bool, object | None]:
        """(True, the job's version in ``state`` as read ahead) or (False, None): not read ahead."""
        ahead = self.get(job_id)
        if ahead is None:
            return False, None
        return True, (ahead[1] if ahead[0] == State(state).value else None)

    def locked(self, job_id: str, row: tuple | None) -> None:
        """This thread took ``job_id``'s lock and read its row (``LOCK_READING``; None: not read, or
        no such job): for its next ``prefetched`` of that one job, unless it writes to the job first."""
        self.local.locked = None if row is None or row[0] is None else (job_id, row)

    def unlocked(self, job_id: str) -> None:
        """This thread let ``job_id``'s lock go: the row read with it is not served any more."""
        locked = getattr(self.local, "locked", None)
        if locked is not None and locked[0] == job_id:
            self.local.locked = None

    @contextlib.contextmanager
    def engines_listed(self) -> Iterator[None]:
        """``PgEngineRecords.prefetched``: every engine's records and the waiting jobs read on entry in
        one statement; within the block this thread's ``engine_rows`` and ``engine_names`` answer from
        them until it appends to the records (``engines_written``)."""
        records: dict[str, list[tuple[str, str]]] = {}
        for engine, key, value in self.engines_and_inbox():
            records.setdefault(engine, []).append((key, value))
        self.local.records = records
        try:
            yield
        finally:
            self.local.records = None

    def engine_rows(self, engine: str) -> list[tuple[str, str]] | None:
        """``engine``'s records as read ahead for this thread (None: read them from the database)."""
        records = getattr(self.local, "records", None)
        if records is not None:
            return list(records.get(engine, ()))
        return self.take_engine(engine)

    def engine_names(self) -> list[str] | None:
        records = getattr(self.local, "records", None)
        return sorted(records) if records is not None else None

    def engines_written(self) -> None:
        """This thread appends to the engines' records: its next reads of them go to the database."""
        self.local.records = self.local.engine = None

    def engine_read(self, engine: str | None, rows: list[tuple[str, str]] | None) -> None:
        """One engine's records as this thread read them with a job's meta, for its next ``take_engine``
        of that engine (None: forget; also when this thread takes a lock or appends to the records)."""
        self.local.engine = None if engine is None or rows is None else (engine, rows)

    def take_engine(self, engine: str) -> list[tuple[str, str]] | None:
        kept = getattr(self.local, "engine", None)
        if kept is None or kept[0] != engine:
            return None
        self.local.engine = None  # once
        return list(kept[1])

    def engines_and_inbox(self) -> list[tuple[str, str, str]]:
        """Every engine's records (engine, key, value) in order; the waiting jobs listed in the same
        statement are kept for this thread's next ``take_inbox``."""
        found = self.conn.do(lambda conn, _: conn.cursor(binary=True).execute(_ENGINES_AND_INBOX).fetchone())
        self.local.inbox = (found[3] or (), found[4] or (), found[5] or ())
        self.local.token = int(found[6])
        return list(zip(found[0] or (), found[1] or (), found[2] or (), strict=True))

    def listed_token(self) -> int | None:
        """The inbox's counter (``PgCoordination.inbox_token``) as this thread's last
        ``engines_and_inbox`` read it with the waiting jobs, once (None: not read since)."""
        token, self.local.token = getattr(self.local, "token", None), None
        return token

    def take_inbox(self) -> list[Entry] | None:
        """The waiting jobs as this thread's last ``engines_and_inbox`` listed them, once (None: not
        listed, or taken already, or this thread changed a job's state since)."""
        listed = getattr(self.local, "inbox", None)
        if listed is None:
            return None
        self.local.inbox = None
        make, inbox = tuple.__new__, State.INBOX
        return [make(Entry, (job_id, inbox, queued, token)) for job_id, queued, token in zip(*listed, strict=True)]

    def moved(self, job_id: str, pairs: tuple | None) -> None:
        """The job's meta as this thread's move returned it (None: forget), for its next read."""
        self.local.moved = None if pairs is None else (job_id, pairs)

    def take_moved(self, job_id: str) -> tuple | None:
        moved = getattr(self.local, "moved", None)
        if moved is None or moved[0] != job_id:
            return None
        self.local.moved = None  # once: the first read after the move, by the thread that made it
        return moved[1]

    def claimed(self, job_id: str, lines: str) -> None:
        """This store claimed ``job_id`` and its statement returned the job's meta ``lines`` (JSON)."""
        self.at_claim[job_id] = lines

    def take_claimed(self, job_id: str) -> str | None:
        """The job's meta lines as its claim found them, once, for whichever thread reads first."""
        return self.at_claim.pop(job_id, None)

    def forget(self, job_id: str) -> None:
        """This thread writes to ``job_id``: what was read of it is stale."""
        self.at_claim.pop(job_id, None)
        local = self.local
        local.inbox = local.moved = None
        self.unlocked(job_id)
        rows = getattr(local, "rows", None)
        if rows:
            rows.pop(job_id, None)

    def forget_inbox(self) -> None:
        """This thread changed a job's state: its next listing of the waiting jobs is read afresh."""
        self.local.inbox = None

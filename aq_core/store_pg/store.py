"""The PostgreSQL store's job state and records: one queue shared by runners on many hosts.

A claim is one ``UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED)`` that also writes the
claimer's lease and takes only a job whose ``not_before`` has passed and whose ``after:`` jobs are
all done (whichever host decided to claim it); every write carries a one-time token, so a retry after an unknown outcome never
applies twice. The leases themselves are ``leases.PgCoordination``'s (``store.coord``).

It also keeps finished jobs' status rows on the server (``rows``; the optional capabilities
``finished_rows``, ``keep_finished_row`` and ``keep_finished_rows`` that ``records`` looks for), and
prints a read from them for a host with no rows cache (``print_read``, see ``reads``).
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aq_core.store_pg.rows as kept_rows
from aq_core.errors import AqError, UsageError
from aq_core.meta import Meta, encode_lines, parse_lines
from aq_core.store import STATES, EngineRecords, Entry, LocalFiles, State, Store, default_root, read_limit
from aq_core.store_pg.connection import Connection
from aq_core.store_pg.leases import LEASE_SQL, PgCoordination
from aq_core.store_pg.schema import PLAN_FROM_META, check_schema

_INSERT_META = """
INSERT INTO aq_meta (job_id, key, value, batch)
SELECT %s, t.k, t.v, %s FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS t(k, v, n) ORDER BY t.n
"""
_INSERT_ENGINE_META = """
INSERT INTO aq_engine_meta (engine, key, value, batch)
SELECT %s, t.k, t.v, %s FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS t(k, v, n) ORDER BY t.n
"""
_FINISHED_COLUMNS = """
SELECT array_agg(id) FILTER (WHERE state = 'done'), array_agg(queued) FILTER (WHERE state = 'done'),
    array_agg(op_token) FILTER (WHERE state = 'done'), array_agg(id) FILTER (WHERE state = 'failed'),
    array_agg(queued) FILTER (WHERE state = 'failed'), array_agg(op_token) FILTER (WHERE state = 'failed')
FROM aq_jobs
"""
BUMP_INBOX = "UPDATE aq_counters SET value = value + 1 WHERE name = 'inbox'"
_CLAIM = f"""
UPDATE aq_jobs SET state = 'building', op_token = %(nonce)s, changed = clock_timestamp(),
    lease_token = %(token)s, lease_host = %(host)s, lease_pid = %(pid)s, lease_pidstart = %(pidstart)s,
    lease_expires = {LEASE_SQL}
WHERE id = (
    SELECT j.id FROM aq_jobs j WHERE j.id = %(id)s AND j.state = %(src)s
    AND (j.not_before IS NULL OR j.not_before <= extract(epoch FROM clock_timestamp()))
    AND NOT EXISTS (
        SELECT 1 FROM unnest(j.after) AS d(dep) LEFT JOIN aq_jobs p ON p.id = d.dep
        WHERE p.state IS DISTINCT FROM 'done'
    )
    FOR UPDATE OF j SKIP LOCKED
)
RETURNING id
"""


def pairs(items: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (key, value) pairs ``items`` makes, exactly as a meta file would read them back."""
    # A NUL cannot be stored in a text column; a meta value never needs one.
    return [(k, v.replace("\x00", "\ufffd")) for k, v in parse_lines(encode_lines(items))]


def append_rows(
    conn: Connection, statement: str, table: str, column: str, owner: str, items: Mapping[str, Any]
) -> None:
    """Insert ``items`` as meta rows of ``owner``, once even when the statement is retried."""
    rows = pairs(items)
    if not rows:
        return
    batch = secrets.token_hex(8)
    keys, values = [k for k, _ in rows], [v for _, v in rows]

    def op(db: Any, retrying: bool) -> None:
        if (
            retrying
            and db.execute(
                f"SELECT 1 FROM {table} WHERE {column} = %s AND batch = %s LIMIT 1", (owner, batch)
            ).fetchone()
        ):
            return
        db.execute(statement, (owner, batch, keys, values))

    conn.do(op)


class PgStore(Store):
    """Jobs, states and meta in PostgreSQL; this host's logs, tmp, runners and config in ``files``."""

    def __init__(self, url: str, local: Path | str | None = None, check: bool = True) -> None:
        self.conn = Connection(url)
        self.url = url
        self.lease = self.conn.lease
        if local is not None:
            self.files = LocalFiles(local)
            self.files.ensure()
        else:
            self.files = LocalFiles(default_root())
        self.coord = PgCoordination(self.conn, self.files)
        self._finished: dict[str, tuple[str, str]] = {}  # job -> (state, token) of this store's move into it
        self.engines = PgEngineRecords(self.conn)
        self.conn.open()
        if check:
            check_schema(self.conn)

    def __repr__(self) -> str:
        return f"PgStore({self.conn.public!r})"

    def describe(self) -> str:
        return self.conn.public

    def close(self) -> None:
        """Stop the heartbeat and close the connections (leases then run out by themselves)."""
        self.conn.closed.set()
        self.coord.stop()
        self.conn.close()

    def __enter__(self) -> PgStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transitions --------------------------------------------------------------------------

    def add(self, job_id: str, data: bytes, meta: Mapping[str, Any]) -> None:
        rows = pairs(meta)
        nonce = secrets.token_hex(8)

        def op(conn: Any, retrying: bool) -> None:
            with conn.transaction():
                row = conn.execute("SELECT state, op_token FROM aq_jobs WHERE id = %s", (job_id,)).fetchone()
                if row is not None:
                    if retrying and row[1] == nonce:
                        return  # the first try was committed
                    raise UsageError(f"job {job_id!r} already exists (in {row[0]}/): rename the file to queue it again")
                if conn.execute("SELECT 1 FROM aq_meta WHERE job_id = %s LIMIT 1", (job_id,)).fetchone():
                    raise UsageError(f"job {job_id!r} already has a record in meta: rename the file to queue it again")
                inserted = conn.execute(
                    "INSERT INTO aq_jobs (id, state, data, queued, op_token)"
                    " VALUES (%s, 'inbox', %s, extract(epoch FROM clock_timestamp()), %s)"
                    " ON CONFLICT (id) DO NOTHING RETURNING id",
                    (job_id, bytes(data), nonce),
                ).fetchone()
                if inserted is None:
                    raise UsageError(f"job {job_id!r} already exists (in inbox/)")
                if rows:
                    conn.execute(_INSERT_META, (job_id, nonce, [k for k, _ in rows], [v for _, v in rows]))
                    conn.execute(PLAN_FROM_META, ([job_id],))
                conn.execute(BUMP_INBOX)

        self.conn.do(op)

    def claim(self, job_id: str) -> bool:
        return self._transition(job_id, State.INBOX, State.BUILDING)

    def move(self, job_id: str, src: State, dst: State) -> bool:
        return self._transition(job_id, State(src), State(dst))

    def _transition(self, job_id: str, src: State, dst: State) -> bool:
        nonce = secrets.token_hex(8)
        coord = self.coord
        holding = coord.holding(job_id) if src is State.BUILDING else None
        if holding is False:
            return False  # its lease was lost: the job is recovery's now, not this attempt's
        params = {
            "id": job_id,
            "src": src.value,
            "dst": dst.value,
            "nonce": nonce,
            "token": coord.token,
            "host": coord.host,
            "pid": coord.pid,
            "pidstart": coord.pidstart,
            "lease": coord.lease,
        }
        if dst is State.BUILDING:
            statement = _CLAIM
        else:
            # A runner finishing its own attempt moves the job only while its lease holds: once it ran
            # out, the job may be another runner's already (recovered, claimed again).
            guard = " AND lease_token = %(token)s AND lease_expires > clock_timestamp()" if holding else ""
            statement = (
                "UPDATE aq_jobs SET state = %(dst)s, op_token = %(nonce)s, changed = clock_timestamp(),"
                " lease_token = NULL, lease_host = NULL, lease_pid = NULL, lease_pidstart = NULL,"
                " lease_expires = NULL"
                f" WHERE id = %(id)s AND state = %(src)s{guard} RETURNING id"
            )
        if dst is State.INBOX:
            # One statement: the move and the inbox counter (idle runners poll it) change together.
            statement = (
                f"WITH moved AS ({statement}), bumped AS ({BUMP_INBOX} AND EXISTS (SELECT 1 FROM moved))"
                " SELECT id FROM moved"
            )
        started = time.monotonic()

        def op(conn: Any, retrying: bool) -> bool:
            if retrying:
                row = conn.execute("SELECT state, op_token FROM aq_jobs WHERE id = %s", (job_id,)).fetchone()
                if row is not None and row[0] == dst.value and row[1] == nonce:
                    return True
            return conn.execute(statement, params).fetchone() is not None

        moved = self.conn.do(op)
        if moved and dst in (State.DONE, State.FAILED):
            if len(self._finished) > 10_000:  # moves nobody kept a row for (a tool, not a runner)
                self._finished.clear()
            self._finished[job_id] = (dst.value, nonce)
        if moved:
            if dst is State.BUILDING:
                coord.claimed(job_id, started)
            elif src is State.BUILDING:
                coord.let_go(job_id)
        return moved

    def append_meta(self, job_id: str, items: Mapping[str, Any], durable: bool = True) -> None:
        if self.coord.holding(job_id) is False:
            # An attempt that lost its lease records nothing more: recovery accounts for it.
            raise AqError(f"job {job_id!r}: this runner lost its lease on the job; not recording")
        append_rows(self.conn, _INSERT_META, "aq_meta", "job_id", job_id, items)

    def read_meta(self, job_id: str) -> Meta:
        rows = self.conn.do(
            lambda conn, _: conn.execute(
                "SELECT key, value FROM aq_meta WHERE job_id = %s ORDER BY seq", (job_id,)
            ).fetchall()
        )
        return Meta([(k, v) for k, v in rows])

    def list(self, state: State | None = None) -> list[Entry]:
        # The version is the token of the job's last transition: it changes whenever the state does.
        if state is None:
            return self._entries(" ORDER BY queued, id", ())
        # the queue's order: highest priority first, then oldest
        return self._entries(" WHERE state = %s ORDER BY priority DESC, queued, id", (state.value,))

    def scan(self, state: State | None = None) -> list[Entry]:
        if state is None:
            return self._grouped(STATES)
        return self._entries(" WHERE state = %s", (state.value,))

    def scan_finished(self) -> list[Entry]:
        """``scan(DONE) + scan(FAILED)``: the finished part of ``scan()``, in the same order (the listing
        the rows cache and the view are kept for, so ``aq status`` and ``aq insights`` share one view)."""
        return self._grouped((State.DONE, State.FAILED))

    def finished_columns(self) -> list[list]:
        """``views.listing_columns(scan_finished())`` without an object per job: the columns as arrays,
        in the same order, decoded in C."""
        done_ids, done_queued, done_tokens, failed_ids, failed_queued, failed_tokens = self._in_table_order(
            _FINISHED_COLUMNS, binary=True
        )[0]
        done_ids, failed_ids = done_ids or [], failed_ids or []
        return [
            [0] * len(done_ids) + [1] * len(failed_ids),
            done_ids + failed_ids,
            (done_queued or []) + (failed_queued or []),
            (done_tokens or []) + (failed_tokens or []),
        ]

    def _grouped(self, states: tuple[State, ...]) -> list[Entry]:
        """Entries in ``states``, grouped by state in that order, each in the table's order."""
        rows = self._in_table_order("SELECT id, state, queued, op_token FROM aq_jobs")
        groups: dict[str, list[Entry]] = {state.value: [] for state in states}
        make, kinds = tuple.__new__, {state.value: state for state in State}
        for job_id, st, queued, token in rows:
            group = groups.get(st)
            if group is not None:
                group.append(make(Entry, (job_id, kinds[st], queued, token)))
        return [entry for group in groups.values() for entry in group]

    def _in_table_order(self, sql: str, binary: bool = False) -> list[tuple]:
        """The rows of a query over the whole of ``aq_jobs`` in one process's sequential scan from its
        first page: the same order for every such query (no index, no parallel workers, no scan
        joining another one midway), so the listings the view is kept for agree byte for byte."""

        def op(db: Any, _: bool) -> list[tuple]:
            cursor = db.cursor(binary=binary)
            with db.pipeline(), db.transaction():  # one round trip
                db.execute("SET LOCAL synchronize_seqscans = off")
                db.execute("SET LOCAL max_parallel_workers_per_gather = 0")
                cursor.execute(sql)
            return cursor.fetchall()

        return self.conn.do(op)

    def _entries(self, where: str, params: tuple) -> list[Entry]:
        sql = "SELECT id, state, queued, op_token FROM aq_jobs" + where
        rows = self.conn.do(lambda conn, _: conn.execute(sql, params).fetchall())
        states = {state.value: state for state in State}  # a dict look-up, not State(...), per row
        return [Entry(job_id, states[st], queued, token) for job_id, st, queued, token in rows]

    # -- finished jobs' rows kept on the server (optional capabilities, see ``records``) --------------

    def finished_rows(self, entries: list[Entry]) -> dict[str, tuple[str, list]]:
        """The status rows the server keeps for these finished entries: id -> (JSON text, summary values)."""
        return kept_rows.fetch(self.conn, entries)

    def keep_finished_row(self, job_id: str, state: State, text: str, summary: list) -> object | None:
        """Keep the row of a job this store just moved into ``state``; return its version (None: not ours)."""
        moved = self._finished.pop(job_id, None)
        if moved is None or moved[0] != State(state).value:
            return None
        with contextlib.suppress(Exception):  # a cache entry: never a reason to fail the move's caller
            kept_rows.keep_one(self.conn, job_id, moved[0], moved[1], text, summary)
        return moved[1]

    def keep_finished_rows(self, rows: list[tuple[str, object, str, list]]) -> None:
        """Keep rows (id, version, JSON text, summary) a reader computed, for every host's next read."""
        kept_rows.keep_many(self.conn, rows)

    def print_read(self, what: str, limit: int = 20) -> bool:
        """Print ``aq status`` or ``aq insights`` from the rows the server keeps (``reads``); False: cannot."""
        from aq_core.store_pg.reads import read

        return read(self, what, limit)

    def read_job(self, job_id: str, state: State) -> bytes:
        row = self.conn.do(
            lambda conn, _: conn.execute(
                "SELECT data FROM aq_jobs WHERE id = %s AND state = %s", (job_id, State(state).value)
            ).fetchone()
        )
        if row is None:
            raise FileNotFoundError(f"job {job_id!r} is not in {State(state).value}/")
        return bytes(row[0])[: read_limit()]

    def locate(self, job_id: str) -> State | None:
        row = self.conn.do(
            lambda conn, _: conn.execute("SELECT state FROM aq_jobs WHERE id = %s", (job_id,)).fetchone()
        )
        return State(row[0]) if row else None


class PgEngineRecords(EngineRecords):
    """Engine records as insert-only rows of ``aq_engine_meta``."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def append(self, engine: str, items: Mapping[str, Any]) -> None:
        if not engine:
            raise AqError(f"bad engine name {engine!r}")
        append_rows(self.conn, _INSERT_ENGINE_META, "aq_engine_meta", "engine", engine, items)

    def read(self, engine: str) -> Meta:
        rows = self.conn.do(
            lambda conn, _: conn.execute(
                "SELECT key, value FROM aq_engine_meta WHERE engine = %s ORDER BY seq", (engine,)
            ).fetchall()
        )
        return Meta([(k, v) for k, v in rows])

    def names(self) -> list[str]:
        rows = self.conn.do(
            lambda conn, _: conn.execute("SELECT DISTINCT engine FROM aq_engine_meta ORDER BY engine").fetchall()
        )
        return [name for (name,) in rows]

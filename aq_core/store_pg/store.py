"""The PostgreSQL store's job state and records: one queue shared by runners on many hosts.

A claim is one ``UPDATE`` that also writes the claimer's lease (``claims``); every write carries a
one-time token, so a retry after an unknown outcome never applies twice. The leases themselves are
``leases.PgCoordination``'s (``store.coord``).

It also keeps finished jobs' status rows on the server (``rows``; the optional capabilities
``finished_rows``, ``keep_finished_row`` and ``keep_finished_rows`` that ``records`` looks for), and
prints a read from them for a host with no rows cache (``print_read``, see ``reads``).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import aq_core.store_pg.claims as claims
import aq_core.store_pg.metalines as lines
import aq_core.store_pg.rows as kept_rows
from aq_core.errors import AqError, UsageError
from aq_core.meta import Meta
from aq_core.store import STATES, Entry, LocalFiles, State, Store, default_root, read_limit
from aq_core.store_pg.connection import Connection
from aq_core.store_pg.engines import PgEngineRecords, pairs
from aq_core.store_pg.leases import PgCoordination
from aq_core.store_pg.readahead import StoreAhead
from aq_core.store_pg.schema import PLAN_FROM_META_ONE, check_schema

BUMP_INBOX = "UPDATE aq_counters SET value = value + 1 WHERE name = 'inbox'"


class PgStore(Store):
    """Jobs, states and meta in PostgreSQL; this host's logs, tmp, runners and config in ``files``."""

    def __init__(self, url: str, local: Path | str | None = None, check: bool = True) -> None:
        self.conn = Connection(url)
        self.url = url
        self.lease = self.conn.lease
        self.files = LocalFiles(local if local is not None else default_root())
        if local is not None:
            self.files.ensure()
        self.coord = PgCoordination(self.conn, self.files)
        self.ahead = self.coord.ahead = StoreAhead(self.conn)
        self.coord.read_ahead = self.ahead.version
        self._finished: dict[str, tuple[str, str]] = {}  # job -> (state, token) of this store's move into it
        self.engines = PgEngineRecords(self.conn, self.ahead)
        self._state = threading.Lock()
        # job -> meta batches (batch, keys, values) committed without waiting, no durable append since
        self._unflushed: dict[str, list[tuple[str, list, list]]] = {}
        self._claims_unflushed: set[str] = set()  # claimed without waiting for the disk, no append since
        claimer = [getattr(self.coord, name) for name in claims.CLAIM_ARGS[3:]]  # as text; a NUL: psycopg's path
        self._claimer = None if "\x00" in str(claimer) else [None if v is None else str(v) for v in claimer]
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
        rows, nonce = pairs(meta), secrets.token_hex(8)
        self.ahead.forget_inbox()

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
                    conn.execute(lines.INSERT_META, (job_id, nonce, [k for k, _ in rows], [v for _, v in rows]))
                    conn.execute(PLAN_FROM_META_ONE, (job_id,))
                conn.execute(BUMP_INBOX)

        self.conn.do(op)

    def claim(self, job_id: str) -> bool:
        return self._transition(job_id, State.INBOX, State.BUILDING)

    def move(self, job_id: str, src: State, dst: State) -> bool:
        return self._transition(job_id, State(src), State(dst))

    def move_deciding(self, job_id: str, src: State, dst: State, items: Mapping[str, Any]) -> bool:
        """``append_meta(job_id, items)`` then ``move(job_id, src, dst)`` in one statement and one
        durable commit (``transitions``' decision and its move): the lines are appended even when the
        move finds the job gone, as the two calls would; a move is never seen without its decision."""
        return self._transition(job_id, State(src), State(dst), items)

    def _transition(self, job_id: str, src: State, dst: State, items: Mapping[str, Any] | None = None) -> bool:
        self.ahead.forget(job_id)
        nonce = secrets.token_hex(8)
        coord = self.coord
        if dst is State.BUILDING and src is not State.BUILDING and self._claimer and "\x00" not in job_id:
            return self._claim(job_id, src, nonce, coord.unconfirmed())
        holding = coord.holding(job_id) if src is State.BUILDING else None
        if holding is False:
            if items is not None:
                self._refuse_lost(job_id)
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
        unconfirmed = coord.unconfirmed()
        if unconfirmed:
            params["lock_names"] = [lock.name for lock in unconfirmed]
            params["lock_tokens"] = [lock.token for lock in unconfirmed]
            params["locks"] = len(unconfirmed)
        if dst is State.BUILDING:
            statement = claims.CLAIM_CONFIRMING if unconfirmed else claims.CLAIM
        else:
            # A runner finishing its own attempt moves the job only while its lease holds: once it ran
            # out, the job may be another runner's already (recovered, claimed again).
            guard = " AND lease_token = %(token)s AND lease_expires > clock_timestamp()" if holding else ""
            statement = (
                "UPDATE aq_jobs SET state = %(dst)s, op_token = %(nonce)s, changed = clock_timestamp(),"
                " lease_token = NULL, lease_host = NULL, lease_pid = NULL, lease_pidstart = NULL,"
                " lease_expires = NULL"
                f" WHERE id = %(id)s AND state = %(src)s{guard}{claims.HELD if unconfirmed else ''} RETURNING id"
            )
            if dst in (State.DONE, State.FAILED):
                statement += lines.WITH_META  # its finished row is computed from it next (``transitions.arrived``)
        # One statement: the decision's meta lines, the move and the inbox counter (idle runners poll
        # it) change together. The meta a move into done/ or failed/ returns is the snapshot's, before
        # the lines added here: those come back from the insert.
        steps = [f"moved AS ({statement})"]
        earlier: list[tuple[str, list, list]] = []
        if items is not None:
            rows = pairs(items)
            with self._state:
                earlier = list(self._unflushed.get(job_id, ()))
            batch = (secrets.token_hex(8), [k for k, _ in rows], [v for _, v in rows])
            params.update(lines.batches_params(job_id, [*earlier, batch]))
            steps.insert(0, f"added AS ({lines.INSERT_ONCE} RETURNING seq, key, value)")
        if dst is State.INBOX:
            steps.append(f"bumped AS ({BUMP_INBOX} AND EXISTS (SELECT 1 FROM moved))")
        if len(steps) > 1:
            statement = (
                f"WITH {', '.join(steps)} SELECT moved.*" + (lines.ADDED if items is not None else "") + " FROM moved"
            )
        started = time.monotonic()

        def op(conn: Any, retrying: bool) -> bool:
            if retrying and claims.applied(conn, job_id, dst, nonce):
                return True
            row = conn.execute(statement, params).fetchone()
            if row is not None and dst in (State.DONE, State.FAILED):  # (id, keys, values[, added keys, values])
                pairs_ = [*zip(row[1] or (), row[2] or (), strict=True)]
                if len(row) == 5:
                    pairs_ += zip(row[3] or (), row[4] or (), strict=True)
                self.ahead.moved(job_id, tuple(pairs_))
            return row is not None

        self.ahead.moved(job_id, None)
        moved = self.conn.do(op)
        if items is not None:
            self._flushed(job_id, earlier)
        if moved and unconfirmed:
            coord.confirmed()
        if moved and dst in (State.DONE, State.FAILED):
            if len(self._finished) > 10_000:  # moves nobody kept a row for (a tool, not a runner)
                self._finished.clear()
            self._finished[job_id] = (dst.value, nonce)
        if moved:
            if dst is State.BUILDING:
                self._claims_unflushed.add(job_id)
                coord.claimed(job_id, started)
            elif src is State.BUILDING:
                coord.let_go(job_id)
                with self._state:
                    self._unflushed.pop(job_id, None)  # the attempt is over
                    self._claims_unflushed.discard(job_id)
        return moved

    @staticmethod
    def _refuse_lost(job_id: str) -> None:
        # An attempt that lost its lease records nothing more: recovery accounts for it.
        raise AqError(f"job {job_id!r}: this runner lost its lease on the job; not recording")

    def _flushed(self, job_id: str, earlier: list[tuple[str, list, list]]) -> None:
        """A durable commit wrote ``earlier`` (batches committed without waiting): not to be sent again."""
        with self._state:
            if kept := [b for b in self._unflushed.get(job_id, ()) if b not in earlier]:
                self._unflushed[job_id] = kept
            else:
                self._unflushed.pop(job_id, None)

    def _claim(self, job_id: str, src: State, nonce: str, unconfirmed: list, rows: list | None = None) -> bool:
        """A claim through a prepared statement (``claims.claim_prepared``), not waiting for the disk;
        with meta ``rows``, ``claims.claim_noting``: the lines in the claim's own durable commit."""
        started, args = time.monotonic(), [job_id, src.value, nonce, *self._claimer]
        if rows is None:
            at_claim = claims.claim_prepared(self.conn, args, unconfirmed)
        else:
            at_claim = claims.claim_noting(self.conn, args, unconfirmed, [k for k, _ in rows], [v for _, v in rows])
        if at_claim is None:
            return False
        if at_claim:  # the next read of the job's meta, unless this store writes to it first
            self.ahead.claimed(job_id, at_claim)
        self.coord.confirmed()
        if rows is None:
            self._claims_unflushed.add(job_id)  # its first append confirms it
        self.coord.claimed(job_id, started)
        return True

    def claim_noting(self, job_id: str, items: Mapping[str, Any]) -> bool:
        """``claim(job_id)`` then ``append_meta(job_id, items)``, in one statement and one durable
        commit (the runner's claim and its ``claimed`` lines): the claim is on the disk when this
        returns True, with the locks this thread took for it. The next ``read_meta`` of the job
        answers the meta as it was at the claim, without these lines. Without the prepared claim
        (or without lines), it is the claim and then the append, whose durable commit confirms it."""
        rows = pairs(items)
        if self._claimer and "\x00" not in job_id and rows:
            self.ahead.forget(job_id)
            return self._claim(job_id, State.INBOX, secrets.token_hex(8), self.coord.unconfirmed(), rows)
        if not self.claim(job_id):
            return False
        self.append_meta(job_id, items, durable=False)  # confirms the claim
        return True

    def append_meta(self, job_id: str, items: Mapping[str, Any], durable: bool = True) -> None:
        if self.coord.holding(job_id) is False:
            self._refuse_lost(job_id)
        self.ahead.forget(job_id)
        rows = pairs(items)
        if not rows:
            return
        batch = secrets.token_hex(8)
        keys, values = [k for k, _ in rows], [v for _, v in rows]
        with self._state:
            earlier = list(self._unflushed.get(job_id, ()))
            confirming = job_id in self._claims_unflushed
        durable = durable or confirming  # the claim did not wait for the disk: this append does

        # Lines appended without waiting for the disk are committed again (once: by their batch)
        # with the next durable append to the job, in its one statement: a server crash may have
        # lost them, and this commit is what the caller relies on for both.
        todo = [*earlier, (batch, keys, values)] if durable else [(batch, keys, values)]
        statement = lines.INSERT_ONCE_COUNTED if durable else lines.INSERT_ONCE_NO_WAIT
        params = lines.batches_params(job_id, todo)
        if confirming:  # applied only while the claim is in the database
            statement, params = claims.CONFIRM_CLAIM, {**params, "token": self.coord.token}
        cursor = self.conn.do(lambda db, _: db.execute(statement, params))
        if confirming:
            row = cursor.fetchone()
            with self._state:
                self._claims_unflushed.discard(job_id)
            if not row[1]:
                # The server restarted and lost the claim: the job is waiting again, or another's now.
                self.coord.lose(job_id)
                raise AqError(f"job {job_id!r}: its claim was lost (the database restarted before it reached the disk)")
        if durable:
            self._flushed(job_id, earlier)
            self.coord.meta_seen(job_id, (row if confirming else cursor.fetchone())[0])
            return
        with self._state:
            if len(self._unflushed) > 1000:  # attempts that ended without a durable append
                self._unflushed.clear()
            self._unflushed.setdefault(job_id, []).append((batch, keys, values))

    def read_meta(self, job_id: str) -> Meta:
        if (at_claim := self.ahead.take_claimed(job_id)) is not None:  # as read at the claim's instant
            return Meta([(k, v) for k, v in json.loads(at_claim)])
        ahead = self.ahead.get(job_id)
        if ahead is not None:
            return Meta(list(ahead[3]))
        moved = self.ahead.take_moved(job_id)  # once: the first read after the move, by its thread
        if moved is not None:
            return Meta(list(moved))
        if self.coord.holding(job_id):  # this store's attempt: its end reads the engine's records next
            return Meta(lines.read_with_engine(self.conn, job_id, self.ahead))
        return Meta(self.conn.do(lambda conn, _: self.conn.rows(conn, lines.READ_META, [job_id])))

    def list(self, state: State | None = None) -> list[Entry]:
        # The version is the token of the job's last transition: it changes whenever the state does.
        if state is None:
            return self._entries(" ORDER BY queued, id", ())
        # the queue's order: highest priority first, then oldest
        return self._entries(" WHERE state = %s ORDER BY priority DESC, queued, id", (state.value,))

    def scan(self, state: State | None = None) -> list[Entry]:
        if state is None:
            return self._grouped(STATES)
        if state is State.INBOX and (listed := self.ahead.take_inbox()) is not None:
            return listed  # read with the engines' records by this thread's pick, a moment ago
        return self._entries(" WHERE state = %s", (state.value,))

    def scan_finished(self) -> list[Entry]:
        """``scan(DONE) + scan(FAILED)``: the finished part of ``scan()``, in the same order (the listing
        the rows cache and the view are kept for, so ``aq status`` and ``aq insights`` share one view)."""
        return self._grouped((State.DONE, State.FAILED))

    def finished_columns(self) -> list[list]:
        """``views.listing_columns(scan_finished())`` without an object per job (``rows.listing``)."""
        return kept_rows.listing(self._in_table_order)

    def status_columns(self) -> tuple[list[Entry], list[list]]:
        """``scan()``'s waiting and running entries, and ``finished_columns()``, from one query."""
        return kept_rows.listing(self._in_table_order, live=True)

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

    def entry(self, job_id: str, state: State) -> Entry | None:
        ahead = self.ahead.get(job_id)
        if ahead is not None:
            if ahead[0] != State(state).value:
                return None
            return Entry(job_id, State(state), ahead[4], ahead[5])
        found = self._entries(" WHERE id = %s AND state = %s", (job_id, State(state).value))
        return found[0] if found else None

    def _entries(self, where: str, params: tuple) -> list[Entry]:
        sql = "SELECT id, state, queued, op_token FROM aq_jobs" + where
        rows = self.conn.do(lambda conn, _: conn.execute(sql, params).fetchall())
        states = {state.value: state for state in State}  # a dict look-up, not State(...), per row
        return [Entry(job_id, states[st], queued, token) for job_id, st, queued, token in rows]

    # -- reading ahead ------------------------------------------------------------------------------

    def prefetched(self, job_ids: Iterable[str], data: bool = True) -> contextlib.AbstractContextManager:
        """Within the block, this thread's reads of these jobs' meta, file and version (``read_meta``,
        ``read_job``, ``coord.job_version``) are served from one query for many jobs: the first
        ``readahead.PREFETCH_CHUNK`` on entry, the next when a read reaches them (in the order given, which
        is the order the caller reads them in; a job read again after its chunk is asked afresh).

        Each answer is what the same read would have returned when its chunk was read (a job whose
        lock this thread just took: by that statement). A job this store writes is read again.
        """
        return self.ahead.prefetched(job_ids, data)

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
            kept_rows.keep_one(self.conn, job_id, moved[0], moved[1], text, summary, self.coord.job_lock(job_id))
        return moved[1]

    def keep_finished_rows(self, rows: list[tuple[str, object, str, list]]) -> None:
        """Keep rows (id, version, JSON text, summary) a reader computed, for every host's next read."""
        kept_rows.keep_many(self.conn, rows)

    def print_read(self, what: str, limit: int = 20) -> bool:
        """Print ``aq status`` or ``aq insights`` from the rows the server keeps (``reads``); False: cannot."""
        from aq_core.store_pg.reads import read

        return read(self, what, limit)

    def read_job(self, job_id: str, state: State) -> bytes:
        ahead = self.ahead.get(job_id)
        if ahead is not None and ahead[2] is not None and ahead[0] == State(state).value:
            return ahead[2][: read_limit()]
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

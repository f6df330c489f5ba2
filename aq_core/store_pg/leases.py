"""Ownership across hosts in PostgreSQL: leases on claimed jobs and locks, liveness, change tokens.

Ownership is a lease, never a session: a claim or a lock is a row with an expiry on the database's
clock. The runner that holds it renews it from a heartbeat thread every third of the lease; a row
whose lease ran out belongs to nobody (a partitioned runner's connection may stay open on the
server for a long time, so session-level locks would not expire). On the holder's own host a dead
holder is detected at once by its pid and start time.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aq_core.store_pg.runners as runner_rows
from aq_core.errors import StoreUnavailable
from aq_core.meta import Meta
from aq_core.store import Coordination, LocalFiles, Lock, State
from aq_core.store_pg.connection import Connection, Prepared, psycopg
from aq_core.store_pg.lockrows import LEASE_SQL, STEAL_LOCK, TAKE_LOCK_OR_HOLDER, delete_lock, holder_alive, write
from aq_core.store_pg.owners import Owners
from aq_core.store_pg.readahead import LOCK_READING, StoreAhead

_RENEW = f"""
WITH j AS (
    UPDATE aq_jobs SET lease_expires = {LEASE_SQL}
    WHERE id = ANY(%(jobs)s::text[]) AND state = 'building' AND lease_token = %(token)s
      AND lease_expires > clock_timestamp()
    RETURNING id
), l AS (
    UPDATE aq_locks SET expires_at = {LEASE_SQL}
    WHERE token = ANY(%(locks)s::text[]) AND expires_at > clock_timestamp()
    RETURNING token
), r AS (
    UPDATE aq_runners SET expires_at = {LEASE_SQL} WHERE token = %(runner)s RETURNING token
)
SELECT 'job', id FROM j UNION ALL SELECT 'lock', token FROM l UNION ALL SELECT 'runner', token FROM r
"""
# Lock tokens held by live Lock objects of this process (any store): a row of ours whose token is
# not here was left by a release that could not reach the database, and may be taken at once.
_LIVE_TOKENS: set[str] = set()
_LIVE_GUARD = threading.Lock()
INBOX_COUNT = Prepared("aq_inbox_count", "SELECT value FROM aq_counters WHERE name = 'inbox'")  # polled: libpq's path


class PgLock(Lock):
    def __init__(self, coord: PgCoordination, name: str, token: str) -> None:
        self.coord = coord
        self.name = name
        self.token = token
        # The runner's lock on a job (``job:<id>``): released, the job's attempt is over.
        self.job: str | None = name[4:] if name.startswith("job:") else None
        self.released = False
        # A write that need not wait for the disk, sent with the release (the job's kept row)
        self.with_release: tuple[str, tuple] | None = None

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        self.coord.release(self)

    def __repr__(self) -> str:
        return f"<lock {self.name!r}{' released' if self.released else ''}>"


class PgCoordination(Coordination):
    """Locks and claims as lease rows, renewed by a heartbeat thread; liveness; change tokens."""

    def __init__(self, conn: Connection, files: LocalFiles) -> None:
        from aq_core.procs import start_time

        super().__init__(files)
        self.conn = conn
        self.lease = conn.lease
        self.host = conn.host
        self.pid = conn.pid
        self.pidstart = start_time(self.pid)
        self.token = secrets.token_hex(8)  # this store object's claims (one runner process)
        # The heartbeat renews every third of the lease; the runner asks for lost leases every second
        # (a local look-up); a lease is given up when half of it is left without a renewal.
        self.beat = self.lease / 3
        self.lease_interval = min(1.0, self.lease / 10)
        self.lost_margin = self.lease / 2
        self._state = threading.Lock()  # guards the lease book-keeping below
        self._mine: set[str] = set()  # jobs this store claimed whose attempt is not over
        self._held: dict[str, float] = {}  # of those, the leases held: monotonic time good until
        self._lost: set[str] = set()
        self._locks: dict[str, PgLock] = {}  # token -> lock
        self._lock_job: dict[str, str] = {}  # token -> the job it was taken for
        self._pending = threading.local()  # locks a thread took since its last claim
        self._unconfirmed = threading.local()  # .locks: taken without waiting for the disk, unconfirmed
        self._last: dict[str, object] = {}  # last cheap versions (served while the store is away)
        self._seen: dict[str, int] = {}  # job -> its meta's version as this store's last append left it
        self._heartbeat: threading.Thread | None = None
        self._runner: str | None = None  # this process's row in aq_runners, once it runs jobs
        self._wake = threading.Event()
        # The store's reads ahead (``PgStore.prefetched``): (known, version) of a job in a state.
        self.read_ahead: Callable[[str, State], tuple[bool, object | None]] | None = None
        # The store's reads ahead: a job's lock taken to claim it reads the job's row in its statement.
        self.ahead: StoreAhead | None = None
        self.owners = Owners(conn, self.host, self.token, self.lease, self._holds)

    # -- the store's book-keeping of its own claims ---------------------------------------------------

    def holding(self, job_id: str) -> bool | None:
        """None: not an attempt of this store's; True: its lease is held; False: it was lost."""
        with self._state:
            if job_id not in self._mine:
                return None
            return job_id in self._held

    def claimed(self, job_id: str, started: float) -> None:
        """Book a claim made at ``started`` (monotonic): the locks this thread took go with it."""
        with self._state:
            self._mine.add(job_id)
            self._held[job_id] = started + self.lease
            self._lost.discard(job_id)
            for lock in getattr(self._pending, "locks", []):
                if not lock.released:
                    self._lock_job[lock.token] = job_id
            self._pending.locks = []
        self._start_heartbeat()

    def let_go(self, job_id: str) -> None:
        """The job left ``building`` through this store: its lease holds nothing any more."""
        with self._state:
            self._mine.discard(job_id)
            self._held.pop(job_id, None)

    def lose(self, job_id: str) -> None:
        """The store found this runner's claim of the job gone (``holding`` says False from now on)."""
        with self._state:
            if job_id in self._mine:
                self._lose(job_id)

    # -- locks ------------------------------------------------------------------------------------

    def try_lock(self, name: str) -> Lock | None:
        return self._take(name, durable=True)

    def try_lock_to_claim(self, name: str) -> Lock | None:
        """Take a lock without waiting for the disk; this thread's next claim or move confirms it.

        That claim or move applies only while the lock's row is still there (``unconfirmed``), and
        the durable commit that follows it (a claim's first append, ``claims.CONFIRM_CLAIM``; a
        move's own) makes the row durable too: the server's log is flushed in order. A
        server that restarted in between and lost the row fails the claim (or, after it, its first
        append), and the runner lets go.
        """
        lock = self._take(name, durable=False)
        if lock is not None:
            held = getattr(self._unconfirmed, "locks", None)
            if held is None:
                held = self._unconfirmed.locks = []
            held.append(lock)
        return lock

    def unconfirmed(self) -> list[PgLock]:
        """The locks this thread took without waiting for the disk and still holds, unconfirmed."""
        held = getattr(self._unconfirmed, "locks", None)
        if not held:
            return []
        held[:] = [lock for lock in held if not lock.released]
        return list(held)

    def confirmed(self) -> None:
        """A durable claim or move of this thread found every lock of ``unconfirmed`` held."""
        self._unconfirmed.locks = []

    def _take(self, name: str, durable: bool) -> Lock | None:
        token = secrets.token_hex(12)
        params = {
            "name": name,
            "token": token,
            "host": self.host,
            "pid": self.pid,
            "pidstart": self.pidstart,
            "lease": self.lease,
        }

        # A job's lock taken to claim it also reads the job's row, the pick's next read (``still_waiting``).
        reading = self.ahead if not durable and name.startswith("job:") else None
        if self.ahead is not None:
            self.ahead.engine_read(None, None)  # read under this lock afresh (``limits.pause_engine``)
        read: list[tuple] = []

        def op(conn: Any, retrying: bool) -> bool:
            read.clear()
            if retrying:
                row = conn.execute("SELECT token FROM aq_locks WHERE name = %s", (name,)).fetchone()
                if row is not None and row[0] == token:
                    return True
            for n in range(3):
                if reading is not None and n == 0 and not retrying:
                    row = conn.execute(LOCK_READING, {**params, "job": name[4:]}).fetchone()
                else:
                    row = write(conn, TAKE_LOCK_OR_HOLDER, params, durable)  # a lost race's holder: no second trip
                if row is None:
                    continue  # released meanwhile, or its holder committed after this statement began
                if row[0]:
                    read[:] = [row[5:]] if len(row) > 5 else []
                    return True
                if not self._stale(*row[1:5]):
                    return False
                return write(conn, STEAL_LOCK, {**params, "old": row[1]}, durable) is not None
            return False

        taken = self.conn.do(op)
        if reading is not None:
            reading.locked(name[4:], read[0] if taken and read else None)
        if not taken:
            return None
        lock = PgLock(self, name, token)
        with _LIVE_GUARD:
            _LIVE_TOKENS.add(token)
        with self._state:
            self._locks[token] = lock
            pending = getattr(self._pending, "locks", None)
            if pending is None:
                pending = self._pending.locks = []
            pending[:] = [held for held in pending if not held.released]
            pending.append(lock)
        return lock

    def _stale(self, token: str, host: str, pid: int, pidstart: float | None) -> bool:
        """True when a lock row's holder is known dead: only decidable on the holder's own host."""
        if host != self.host:
            return False
        if pid == self.pid and (pidstart is None or self.pidstart is None or abs(pidstart - self.pidstart) < 0.05):
            with _LIVE_GUARD:
                return token not in _LIVE_TOKENS
        return not holder_alive(pid, pidstart)

    def release(self, lock: PgLock) -> None:
        with _LIVE_GUARD:
            _LIVE_TOKENS.discard(lock.token)
        with self._state:
            self._locks.pop(lock.token, None)
            self._lock_job.pop(lock.token, None)
            if lock.job is not None:
                if self.ahead is not None:
                    self.ahead.unlocked(lock.job)
                # The attempt that held the job is over: its lease, if still ours, holds nothing.
                self._mine.discard(lock.job)
                self._held.pop(lock.job, None)
                self._last.pop("meta:" + lock.job, None)
                self._seen.pop(lock.job, None)
        with contextlib.suppress(StoreUnavailable, Exception):
            # Best effort: a row we cannot delete runs out with its lease (and is ours to take again).
            self.conn.do(lambda conn, _: delete_lock(conn, lock.name, lock.token, lock.with_release), retry_for=1.0)

    def job_lock(self, job_id: str) -> PgLock | None:
        """This process's live lock on ``job_id`` (``job:<id>``), if it holds one."""
        with self._state:
            return next((lock for lock in self._locks.values() if lock.job == job_id), None)

    # -- leases -----------------------------------------------------------------------------------

    def _start_heartbeat(self) -> None:
        with self._state:
            if self._heartbeat is not None and self._heartbeat.is_alive():
                return
            self._heartbeat = threading.Thread(target=self._heartbeat_loop, name="aq-store-heartbeat", daemon=True)
            self._heartbeat.start()

    def stop(self) -> None:
        """Stop the heartbeat (the connection's ``closed`` is set): leases then run out by themselves."""
        self._wake.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)

    def _heartbeat_loop(self) -> None:
        conn = None
        closed = self.conn.closed
        while not closed.is_set():
            with self._state:
                jobs = list(self._held)
                locks = list(self._locks)
            if not jobs and not locks and self._runner is None:
                self._wake.wait(self.beat)
                self._wake.clear()
                continue
            sent = time.monotonic()
            renewed: set[tuple[str, str]] | None
            try:
                if conn is None or conn.closed:
                    conn = self.conn.connect("heartbeat")
                params = {"jobs": jobs, "locks": locks, "token": self.token, "lease": self.lease}
                rows = conn.execute(_RENEW, {**params, "runner": self._runner}).fetchall()
                renewed = {(kind, value) for kind, value in rows}
            except psycopg.Error:
                renewed = None
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                    conn = None
            self._account(jobs, locks, renewed, sent)
            wait = self.beat - (time.monotonic() - sent) if renewed is not None else min(1.0, self.beat / 3)
            closed.wait(max(0.05, wait))
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _account(self, jobs: list[str], locks: list[str], renewed: set[tuple[str, str]] | None, sent: float) -> None:
        """Book a renewal (``renewed``: what the database extended; None: it could not be reached)."""
        now = time.monotonic()
        with self._state:
            if renewed is None:
                # Unreachable: a hold is given up while enough of its lease is left to stop the agent.
                for job_id, until in list(self._held.items()):
                    if until - now < self.lost_margin:
                        self._lose(job_id)
                return
            for job_id in jobs:
                if job_id not in self._held:
                    continue  # moved or released meanwhile
                if ("job", job_id) in renewed:
                    self._held[job_id] = sent + self.lease
                else:
                    self._lose(job_id)  # its lease ran out and may be another runner's now
            for token in locks:
                if token in self._locks and ("lock", token) not in renewed:
                    lock = self._locks[token]
                    job_id = self._lock_job.get(token) or lock.job
                    if job_id is not None and job_id in self._held:
                        self._lose(job_id)

    def _lose(self, job_id: str) -> None:
        self._held.pop(job_id, None)
        self._lost.add(job_id)

    def renew(self, job_ids: list[str]) -> set[str]:
        """Return the jobs of ``job_ids`` whose hold is lost (the heartbeat thread renews the rest)."""
        if not job_ids:
            return set()
        self._start_heartbeat()
        with self._state:
            lost = {job_id for job_id in job_ids if job_id in self._lost or job_id not in self._held}
            self._lost -= lost
        return lost

    # -- ownership --------------------------------------------------------------------------------

    def claim_meta(self) -> dict[str, Any]:
        return {"pid": self.pid, "pidstart": self.pidstart, "host": self.host, "lease": self.lease}

    def owner_alive(self, job_id: str, meta: Meta) -> bool:
        return self.owners.owner_alive(job_id, meta)

    def orphans_locked(self, job_ids: list[str]) -> dict[str, str | None]:
        return self.owners.orphans_locked(job_ids)

    def _holds(self, job_id: str) -> bool:
        with self._state:
            return job_id in self._held

    # -- every host's runners: aq_runners (and this host's runners/ folder) ------------------------

    def register_runner(self, pid: int, pidstart: float, on_stop: Callable[[], None] | None = None) -> Path:
        path = super().register_runner(pid, pidstart)
        runner_rows.register(self.conn, self.token, pid, pidstart or None, self.lease)
        self._runner = self.token
        self._start_heartbeat()
        if on_stop is not None:
            threading.Thread(target=self._watch_stop, args=(on_stop,), name="aq-store-stop", daemon=True).start()
        return path

    def _watch_stop(self, on_stop: Callable[[], None]) -> None:
        """Look at this runner's row about once a second; call ``on_stop`` once when it is asked to stop."""
        while not self.conn.closed.wait(self.lease_interval) and self._runner is not None:
            try:
                asked = runner_rows.stop_requested(self.conn, self._runner)
            except Exception:  # the store is away: a stop is seen when it is back
                continue
            if asked:
                on_stop()
                return

    def unregister_runner(self, pid: int) -> None:
        super().unregister_runner(pid)
        if pid == self.pid and self._runner is not None:
            self._runner = None
            with contextlib.suppress(StoreUnavailable, Exception):  # else the row runs out by itself
                runner_rows.unregister(self.conn, self.token)

    def request_stop(self, wait: float) -> tuple[list[str], list[str]]:
        return runner_rows.request_stop(self.conn, wait, holder_alive)

    def live_runners(self) -> list[str]:
        return runner_rows.live(self.conn, holder_alive)

    # -- change tokens ----------------------------------------------------------------------------

    def _cheap(self, key: str, fn: Callable[[Any, bool], object]) -> object:
        """A polled value; while the database is away, the last one seen (the poller keeps going)."""
        try:
            value = self.conn.do(fn, retry_for=0.5)
        except StoreUnavailable:
            return self._last.get(key, -1)
        self._last[key] = value
        return value

    def meta_seen(self, job_id: str, version: int) -> None:
        """This store's durable append left the job's meta at ``version``: the next ``meta_version``
        of the job is answered from it (the runner asks right after the attempt's record)."""
        if len(self._seen) > 1000:  # appends of jobs whose version nobody asked for
            self._seen.clear()
        self._seen[job_id] = version
        self._last["meta:" + job_id] = version  # as if asked: served while the store is away

    def meta_version(self, job_id: str) -> object:
        seen = self._seen.pop(job_id, None)
        if seen is not None:
            return seen  # once: later asks see other writers' lines
        return self._cheap(
            "meta:" + job_id,
            lambda conn, _: conn.execute("SELECT count(*) FROM aq_meta WHERE job_id = %s", (job_id,)).fetchone()[0],
        )

    def job_version(self, job_id: str, state: State) -> object | None:
        if self.read_ahead is not None:
            known, version = self.read_ahead(job_id, state)
            if known:
                return version
        row = self.conn.do(
            lambda conn, _: conn.execute(
                "SELECT rev, octet_length(data) FROM aq_jobs WHERE id = %s AND state = %s",
                (job_id, State(state).value),
            ).fetchone()
        )
        return None if row is None else tuple(row)

    def inbox_token(self) -> object:
        return self._cheap(
            "inbox",
            lambda conn, _: int(self.conn.first(conn, INBOX_COUNT, [])),
        )

    def listed_inbox_token(self) -> object | None:
        """``inbox_token`` as this thread's last pick read it with the waiting jobs, once (None: not read)."""
        return self.ahead.listed_token() if self.ahead is not None else None

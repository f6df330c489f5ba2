"""The PostgreSQL store: one queue shared by runners on many hosts (SPEC §12), through psycopg 3.

Tables (created and migrated by ``aq store init``, versioned in ``aq_schema_version``):

- ``aq_jobs``: one row per job: its state, the job file's bytes, when it was queued, and the lease of
  the runner that claimed it (``lease_token``, ``lease_host``, ``lease_pid``, ``lease_expires``);
  since version 2 its plan (``after``, ``priority``, ``not_before``, from its meta at add): the claim
  takes a job only when every job it waits for is done and its time has come.
- ``aq_meta`` / ``aq_engine_meta``: insert-only ``key``/``value`` rows in ``seq`` order (a trigger
  refuses UPDATE and DELETE); the last value of a key wins, as on disk.
- ``aq_locks``: named locks as lease rows (holder token, host, pid, ``expires_at``).
- ``aq_counters``: ``inbox`` counts transitions into the inbox (idle runners poll it).

Ownership across hosts is a lease, never a session: a claim or a lock is a row with an expiry on the
database's clock. The runner that holds it renews it from a heartbeat thread every third of the
lease; a row whose lease ran out belongs to nobody (a partitioned runner's connection may stay open
on the server for a long time, so session-level locks would not expire). On the holder's own host a
dead holder is detected at once by its pid and start time.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aq_core.errors import AqError, StoreUnavailable, UsageError
from aq_core.meta import Meta, encode_lines, parse_lines
from aq_core.store import STATES, Entry, FsStore, Lock, State, Store, host_id

try:
    import psycopg
    import psycopg.errors
    from psycopg.conninfo import conninfo_to_dict
except ImportError:  # pragma: no cover - the optional dependency is missing
    psycopg = None  # type: ignore[assignment]

SCHEMA_VERSION = 2
DEFAULT_LEASE = 30.0
MIN_LEASE = 1.0
MAX_JOB_BYTES = 64 << 20
_SCHEMA_LOCK = 0x6171_5F73_6368  # pg_advisory_xact_lock key for `aq store init` (a transaction lock only)

T = TypeVar("T")

#: A job's plan columns from the last ``after``, ``priority`` and ``not_before`` of its meta (written
#: by ``aq add``), for the jobs ``%s`` names (a text[] of ids). Values meta cannot parse are left out.
PLAN_FROM_META = r"""
UPDATE aq_jobs j SET
    after = coalesce((SELECT string_to_array(value, ',') FROM aq_meta m
                      WHERE m.job_id = j.id AND m.key = 'after' ORDER BY m.seq DESC LIMIT 1), '{}'),
    priority = coalesce((SELECT value::integer FROM aq_meta m
                         WHERE m.job_id = j.id AND m.key = 'priority' AND m.value ~ '^-?[0-9]{1,9}$'
                         ORDER BY m.seq DESC LIMIT 1), 0),
    not_before = (SELECT value::double precision FROM aq_meta m
                  WHERE m.job_id = j.id AND m.key = 'not_before' AND m.value ~ '^[0-9]{1,12}(\.[0-9]+)?$'
                  ORDER BY m.seq DESC LIMIT 1)
WHERE j.id = ANY(%s::text[])
"""

# Each migration is a list of statements, applied in one transaction with its version row.
MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE aq_jobs (
            id text PRIMARY KEY,
            state text NOT NULL CHECK (state IN ('inbox', 'building', 'done', 'failed')),
            data bytea NOT NULL,
            queued double precision NOT NULL,
            rev integer NOT NULL DEFAULT 1,
            changed timestamptz NOT NULL DEFAULT clock_timestamp(),
            op_token text,
            lease_token text,
            lease_host text,
            lease_pid integer,
            lease_pidstart double precision,
            lease_expires timestamptz
        )""",
        "CREATE INDEX aq_jobs_by_state ON aq_jobs (state, queued, id)",
        """CREATE TABLE aq_meta (
            seq bigserial,
            job_id text NOT NULL,
            key text NOT NULL,
            value text NOT NULL,
            batch text,
            PRIMARY KEY (job_id, seq)
        )""",
        """CREATE TABLE aq_engine_meta (
            seq bigserial,
            engine text NOT NULL,
            key text NOT NULL,
            value text NOT NULL,
            batch text,
            PRIMARY KEY (engine, seq)
        )""",
        """CREATE TABLE aq_locks (
            name text PRIMARY KEY,
            token text NOT NULL,
            host text NOT NULL,
            pid integer NOT NULL,
            pidstart double precision,
            acquired timestamptz NOT NULL DEFAULT clock_timestamp(),
            expires_at timestamptz NOT NULL
        )""",
        "CREATE TABLE aq_counters (name text PRIMARY KEY, value bigint NOT NULL)",
        "INSERT INTO aq_counters (name, value) VALUES ('inbox', 0)",
        """CREATE FUNCTION aq_insert_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% is insert-only (meta is append-only)', TG_TABLE_NAME;
        END $$""",
        """CREATE TRIGGER aq_meta_insert_only BEFORE UPDATE OR DELETE ON aq_meta
            FOR EACH ROW EXECUTE FUNCTION aq_insert_only()""",
        """CREATE TRIGGER aq_engine_meta_insert_only BEFORE UPDATE OR DELETE ON aq_engine_meta
            FOR EACH ROW EXECUTE FUNCTION aq_insert_only()""",
    ],
    # Queue control (after:, priority:, not_before:): the claim checks them; jobs already queued
    # have no plan, so the defaults are theirs.
    2: [
        "ALTER TABLE aq_jobs ADD COLUMN after text[] NOT NULL DEFAULT '{}'",
        "ALTER TABLE aq_jobs ADD COLUMN priority integer NOT NULL DEFAULT 0",
        "ALTER TABLE aq_jobs ADD COLUMN not_before double precision",
        "CREATE INDEX aq_jobs_by_priority ON aq_jobs (state, priority DESC, queued, id)",
    ],
}

_INSERT_META = """
INSERT INTO aq_meta (job_id, key, value, batch)
SELECT %s, t.k, t.v, %s FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS t(k, v, n) ORDER BY t.n
"""
_INSERT_ENGINE_META = """
INSERT INTO aq_engine_meta (engine, key, value, batch)
SELECT %s, t.k, t.v, %s FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS t(k, v, n) ORDER BY t.n
"""
_BUMP_INBOX = "UPDATE aq_counters SET value = value + 1 WHERE name = 'inbox'"
_LEASE = "clock_timestamp() + make_interval(secs => %(lease)s)"
_CLAIM = f"""
UPDATE aq_jobs SET state = 'building', op_token = %(nonce)s, changed = clock_timestamp(),
    lease_token = %(token)s, lease_host = %(host)s, lease_pid = %(pid)s, lease_pidstart = %(pidstart)s,
    lease_expires = {_LEASE}
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
_TAKE_LOCK = f"""
INSERT INTO aq_locks (name, token, host, pid, pidstart, expires_at)
VALUES (%(name)s, %(token)s, %(host)s, %(pid)s, %(pidstart)s, {_LEASE})
ON CONFLICT (name) DO UPDATE SET token = EXCLUDED.token, host = EXCLUDED.host, pid = EXCLUDED.pid,
    pidstart = EXCLUDED.pidstart, acquired = clock_timestamp(), expires_at = EXCLUDED.expires_at
WHERE aq_locks.expires_at <= clock_timestamp()
RETURNING token
"""
_STEAL_LOCK = f"""
UPDATE aq_locks SET token = %(token)s, host = %(host)s, pid = %(pid)s, pidstart = %(pidstart)s,
    acquired = clock_timestamp(), expires_at = {_LEASE}
WHERE name = %(name)s AND token = %(old)s
RETURNING token
"""
_RENEW = f"""
WITH j AS (
    UPDATE aq_jobs SET lease_expires = {_LEASE}
    WHERE id = ANY(%(jobs)s::text[]) AND state = 'building' AND lease_token = %(token)s
      AND lease_expires > clock_timestamp()
    RETURNING id
), l AS (
    UPDATE aq_locks SET expires_at = {_LEASE}
    WHERE token = ANY(%(locks)s::text[]) AND expires_at > clock_timestamp()
    RETURNING token
)
SELECT 'job', id FROM j UNION ALL SELECT 'lock', token FROM l
"""

# Lock tokens held by live Lock objects of this process (any PgStore): a row of ours whose token is
# not here was left by a release that could not reach the database, and may be taken at once.
_LIVE_TOKENS: set[str] = set()
_LIVE_GUARD = threading.Lock()


def _need_psycopg() -> None:
    if psycopg is None:
        raise AqError('the PostgreSQL store needs psycopg 3: pip install "aq-core[postgres]" (or "psycopg[binary]")')


def parse_url(url: str) -> tuple[str, float]:
    """Return (the URL libpq gets, the lease in seconds): aq's own ``lease=`` parameter is taken out.

    The lease comes from ``?lease=SECONDS`` in the URL, else ``$AQ_LEASE``, else 30 seconds.
    """
    parts = urlsplit(url)
    params = parse_qsl(parts.query, keep_blank_values=True)
    lease_text = None
    kept = []
    for key, value in params:
        if key == "lease":
            lease_text = value
        else:
            kept.append((key, value))
    source = "lease"
    if lease_text is None and os.environ.get("AQ_LEASE"):
        lease_text, source = os.environ["AQ_LEASE"], "AQ_LEASE"
    lease = DEFAULT_LEASE
    if lease_text is not None:
        try:
            lease = float(lease_text)
        except ValueError:
            lease = float("nan")
        if not lease >= MIN_LEASE or lease == float("inf"):
            raise UsageError(f"--store: {source}={lease_text!r}: expected seconds, a number of at least {MIN_LEASE:g}")
    clean = urlunsplit(parts._replace(query=urlencode(kept)))
    return clean, lease


def public_url(url: str) -> str:
    """``url`` as a user may see it: scheme, user, host, port and database; never the password."""
    try:
        info = conninfo_to_dict(parse_url(url)[0]) if psycopg is not None else {}
    except Exception:
        info = {}
    if not info:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        user = f"{parts.username}@" if parts.username else ""
        return f"postgresql://{user}{host}{port}{parts.path}"
    user = f"{info['user']}@" if info.get("user") else ""
    host = info.get("host") or info.get("hostaddr") or "localhost"
    port = f":{info['port']}" if info.get("port") else ""
    return f"postgresql://{user}{host}{port}/{info.get('dbname') or ''}"


def _password(url: str) -> str | None:
    try:
        return conninfo_to_dict(parse_url(url)[0]).get("password") if psycopg is not None else None
    except Exception:
        return urlsplit(url).password


def _first_line(exc: BaseException, secret: str | None) -> str:
    text = str(exc).strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    line = line.removeprefix("connection failed: ")
    if secret:
        line = line.replace(secret, "***")
    return line


def _connection_lost(exc: BaseException, conn: Any) -> bool:
    """True when ``exc`` means the connection is gone (retry on a new one), not a bad statement."""
    if psycopg is None or not isinstance(exc, psycopg.Error):
        return False
    state = getattr(exc, "sqlstate", None) or ""
    if state.startswith("08") or state in ("57P01", "57P02", "57P03"):
        return True
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return conn is None or conn.closed or getattr(conn, "broken", False)
    return False


def _pairs(items: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (key, value) pairs ``items`` makes, exactly as a meta file would read them back."""
    # A NUL cannot be stored in a text column; a meta value never needs one.
    return [(k, v.replace("\x00", "\ufffd")) for k, v in parse_lines(encode_lines(items))]


def _holder_alive(pid: int | None, pidstart: float | None) -> bool:
    from aq_core.procs import alive

    if not pid or pid <= 0:
        return False
    if pidstart is None:  # no start time was known: only the pid can say
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return alive(pid, pidstart)


class _PgLock(Lock):
    def __init__(self, store: PgStore, name: str, token: str) -> None:
        self.store = store
        self.name = name
        self.token = token
        self.job: str | None = name[4:] if name.startswith("job:") else None
        self.released = False

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        self.store._release(self)

    def __repr__(self) -> str:
        return f"<lock {self.name!r}{' released' if self.released else ''}>"


class PgStore(Store):
    """Jobs, states and meta in PostgreSQL; this host's logs, tmp, runners and config in ``local``."""

    def __init__(self, url: str, local: Path | str | None = None, check_schema: bool = True) -> None:
        _need_psycopg()
        from aq_core.procs import start_time

        self.url = url
        self.conninfo, self.lease = parse_url(url)
        self._public = public_url(url)
        self._secret = _password(url)
        # The heartbeat renews every third of the lease; the runner asks for lost leases every second
        # (a local look-up); a lease is given up when half of it is left without a renewal.
        self.beat = self.lease / 3
        self.lease_interval = min(1.0, self.lease / 10)
        self.lost_margin = self.lease / 2
        self.retry_for = max(1.0, min(5.0, self.lease / 10))
        self.connect_timeout = max(2, min(10, round(self.lease / 10)))
        self.host = host_id()
        self.pid = os.getpid()
        self.pidstart = start_time(self.pid)
        self.token = secrets.token_hex(8)  # this store object's claims (one runner process)
        self._mutex = threading.Lock()
        self._conn: Any = None
        self._connect_failed = 0.0
        self._connect_error = ""
        self._state = threading.Lock()  # guards the lease book-keeping below
        self._mine: set[str] = set()  # jobs this store claimed whose attempt is not over
        self._held: dict[str, float] = {}  # of those, the leases held: monotonic time good until
        self._lost: set[str] = set()
        self._locks: dict[str, _PgLock] = {}  # token -> lock
        self._lock_job: dict[str, str] = {}  # token -> the job it was taken for
        self._pending = threading.local()  # locks a thread took since its last claim
        self._last: dict[str, object] = {}  # last cheap versions (served while the store is away)
        self._heartbeat: threading.Thread | None = None
        self._wake = threading.Event()
        self._closed = threading.Event()
        if local is not None:
            self.local = Path(os.path.abspath(os.path.expanduser(local)))
            self.ensure_local()
        else:
            from aq_core.store import default_root

            self.local = default_root()
        try:
            self._conn = self._connect("ops")
        except psycopg.Error as exc:
            raise AqError(f"store: cannot connect to {self._public}: {_first_line(exc, self._secret)}") from None
        if check_schema:
            self._check_schema()

    def __repr__(self) -> str:
        return f"PgStore({self._public!r})"

    def describe(self) -> str:
        return self._public

    # -- connections ----------------------------------------------------------------------------

    def _connect(self, purpose: str) -> Any:
        # A statement on a connection whose packets go unanswered fails after this (a partition).
        timeout_ms = max(self.connect_timeout, round(self.lease / 6)) * 1000
        return psycopg.connect(
            self.conninfo,
            autocommit=True,
            connect_timeout=self.connect_timeout,
            application_name=f"aq {purpose} {self.host} {self.pid}"[:63],
            keepalives=1,
            keepalives_idle=max(1, round(self.lease / 6)),
            keepalives_interval=max(1, round(self.lease / 20)),
            keepalives_count=3,
            tcp_user_timeout=timeout_ms,
        )

    def _check_schema(self) -> None:
        version = self._do(lambda conn, _: schema_version(conn))
        if version is None:
            raise AqError(f"store: {self._public} has no aq schema yet: run `aq store init --store URL` once")
        if version > SCHEMA_VERSION:
            raise AqError(
                f"store: {self._public} has schema version {version}, newer than this aq knows"
                f" ({SCHEMA_VERSION}): upgrade aq on this host"
            )
        if version < SCHEMA_VERSION:
            raise AqError(
                f"store: {self._public} has schema version {version}, older than this aq ({SCHEMA_VERSION}):"
                " run `aq store init --store URL` to migrate it"
            )

    def _do(self, fn: Callable[[Any, bool], T], retry_for: float | None = None) -> T:
        """Run ``fn(conn, retrying)`` on the connection, reconnecting when it was lost.

        ``retrying`` is True on a new connection after a failure whose outcome is unknown: ``fn``
        then checks whether its first try took effect (every write carries a one-time token).
        Raise ``StoreUnavailable`` when the database stays unreachable for ``retry_for`` seconds.
        """
        deadline = None
        delay = 0.05
        retrying = False
        error: BaseException | None = None
        while True:
            with self._mutex:
                conn = self._conn
                try:
                    if conn is None or conn.closed:
                        self._conn = conn = None
                        if time.monotonic() - self._connect_failed < 0.5:
                            # Another thread just failed to connect: do not queue up behind it.
                            raise StoreUnavailable(self._connect_error)
                        try:
                            self._conn = conn = self._connect("ops")
                        except psycopg.Error as exc:
                            self._connect_failed = time.monotonic()
                            self._connect_error = _first_line(exc, self._secret)
                            raise
                    return fn(conn, retrying)
                except StoreUnavailable as exc:
                    error = error or exc
                except psycopg.Error as exc:
                    if not _connection_lost(exc, conn):
                        raise
                    error = exc
                    if self._conn is not None:
                        with contextlib.suppress(Exception):
                            self._conn.close()
                        self._conn = None
            now = time.monotonic()
            if deadline is None:
                deadline = now + (self.retry_for if retry_for is None else retry_for)
            if now >= deadline or self._closed.is_set():
                raise StoreUnavailable(f"store: cannot reach {self._public}: {_first_line(error, self._secret)}")
            retrying = True
            time.sleep(min(delay, max(0.0, deadline - now)))
            delay = min(delay * 2, 0.5)

    def close(self) -> None:
        """Stop the heartbeat and close the connections (leases then run out by themselves)."""
        self._closed.set()
        self._wake.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)
        with self._mutex:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None

    def __enter__(self) -> PgStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transitions --------------------------------------------------------------------------

    def add(self, job_id: str, data: bytes, meta: Mapping[str, Any]) -> None:
        pairs = _pairs(meta)
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
                if pairs:
                    conn.execute(_INSERT_META, (job_id, nonce, [k for k, _ in pairs], [v for _, v in pairs]))
                    conn.execute(PLAN_FROM_META, ([job_id],))
                conn.execute(_BUMP_INBOX)

        self._do(op)

    def claim(self, job_id: str) -> bool:
        return self._transition(job_id, State.INBOX, State.BUILDING)

    def move(self, job_id: str, src: State, dst: State) -> bool:
        return self._transition(job_id, State(src), State(dst))

    def _transition(self, job_id: str, src: State, dst: State) -> bool:
        nonce = secrets.token_hex(8)
        with self._state:
            mine = src is State.BUILDING and job_id in self._mine
            if mine and job_id not in self._held:
                return False  # its lease was lost: the job is recovery's now, not this attempt's
        params = {
            "id": job_id,
            "src": src.value,
            "dst": dst.value,
            "nonce": nonce,
            "token": self.token,
            "host": self.host,
            "pid": self.pid,
            "pidstart": self.pidstart,
            "lease": self.lease,
        }
        if dst is State.BUILDING:
            statement = _CLAIM
        else:
            # A runner finishing its own attempt moves the job only while its lease holds: once it ran
            # out, the job may be another runner's already (recovered, claimed again).
            guard = " AND lease_token = %(token)s AND lease_expires > clock_timestamp()" if mine else ""
            statement = (
                "UPDATE aq_jobs SET state = %(dst)s, op_token = %(nonce)s, changed = clock_timestamp(),"
                " lease_token = NULL, lease_host = NULL, lease_pid = NULL, lease_pidstart = NULL,"
                " lease_expires = NULL"
                f" WHERE id = %(id)s AND state = %(src)s{guard} RETURNING id"
            )
        if dst is State.INBOX:
            # One statement: the move and the inbox counter (idle runners poll it) change together.
            statement = (
                f"WITH moved AS ({statement}), bumped AS ({_BUMP_INBOX} AND EXISTS (SELECT 1 FROM moved))"
                " SELECT id FROM moved"
            )
        started = time.monotonic()

        def op(conn: Any, retrying: bool) -> bool:
            if retrying:
                row = conn.execute("SELECT state, op_token FROM aq_jobs WHERE id = %s", (job_id,)).fetchone()
                if row is not None and row[0] == dst.value and row[1] == nonce:
                    return True
            return conn.execute(statement, params).fetchone() is not None

        moved = self._do(op)
        if moved:
            with self._state:
                if dst is State.BUILDING:
                    self._mine.add(job_id)
                    self._held[job_id] = started + self.lease
                    self._lost.discard(job_id)
                    for lock in getattr(self._pending, "locks", []):
                        if not lock.released:
                            self._lock_job[lock.token] = job_id
                    self._pending.locks = []
                elif src is State.BUILDING:
                    self._mine.discard(job_id)
                    self._held.pop(job_id, None)
            if dst is State.BUILDING:
                self._start_heartbeat()
        return moved

    def append_meta(self, job_id: str, items: Mapping[str, Any]) -> None:
        with self._state:
            if job_id in self._mine and job_id not in self._held:
                # An attempt that lost its lease records nothing more: recovery accounts for it.
                raise AqError(f"job {job_id!r}: this runner lost its lease on the job; not recording")
        self._append(_INSERT_META, "aq_meta", "job_id", job_id, items)

    def _append(self, statement: str, table: str, column: str, owner: str, items: Mapping[str, Any]) -> None:
        pairs = _pairs(items)
        if not pairs:
            return
        batch = secrets.token_hex(8)
        keys, values = [k for k, _ in pairs], [v for _, v in pairs]

        def op(conn: Any, retrying: bool) -> None:
            if (
                retrying
                and conn.execute(
                    f"SELECT 1 FROM {table} WHERE {column} = %s AND batch = %s LIMIT 1", (owner, batch)
                ).fetchone()
            ):
                return
            conn.execute(statement, (owner, batch, keys, values))

        self._do(op)

    def read_meta(self, job_id: str) -> Meta:
        rows = self._do(
            lambda conn, _: conn.execute(
                "SELECT key, value FROM aq_meta WHERE job_id = %s ORDER BY seq", (job_id,)
            ).fetchall()
        )
        return Meta([(k, v) for k, v in rows])

    def list(self, state: State | None = None) -> list[Entry]:
        # The version is the token of the job's last transition: it changes whenever the state does.
        sql = "SELECT id, state, queued, op_token FROM aq_jobs"
        if state is None:
            sql, params = sql + " ORDER BY queued, id", ()
        else:
            # The queue's order: highest priority first, then oldest.
            sql, params = sql + " WHERE state = %s ORDER BY priority DESC, queued, id", (state.value,)
        rows = self._do(lambda conn, _: conn.execute(sql, params).fetchall())
        return [Entry(job_id, State(st), float(queued), token) for job_id, st, queued, token in rows]

    def read_job(self, job_id: str, state: State) -> bytes:
        row = self._do(
            lambda conn, _: conn.execute(
                "SELECT data FROM aq_jobs WHERE id = %s AND state = %s", (job_id, State(state).value)
            ).fetchone()
        )
        if row is None:
            raise FileNotFoundError(f"job {job_id!r} is not in {State(state).value}/")
        return bytes(row[0])[:MAX_JOB_BYTES]

    def locate(self, job_id: str) -> State | None:
        row = self._do(lambda conn, _: conn.execute("SELECT state FROM aq_jobs WHERE id = %s", (job_id,)).fetchone())
        return State(row[0]) if row else None

    # -- locks ----------------------------------------------------------------------------------

    def _lock_name(self, name: str) -> str:
        # A work tree lock names a path on this host: the same path on another host is another repo.
        return f"git@{self.host}:{name[4:]}" if name.startswith("git:") else name

    def try_lock(self, name: str) -> Lock | None:
        name = self._lock_name(name)
        token = secrets.token_hex(12)
        params = {
            "name": name,
            "token": token,
            "host": self.host,
            "pid": self.pid,
            "pidstart": self.pidstart,
            "lease": self.lease,
        }

        def op(conn: Any, retrying: bool) -> bool:
            if retrying:
                row = conn.execute("SELECT token FROM aq_locks WHERE name = %s", (name,)).fetchone()
                if row is not None and row[0] == token:
                    return True
            for _ in range(3):
                if conn.execute(_TAKE_LOCK, params).fetchone() is not None:
                    return True
                holder = conn.execute(
                    "SELECT token, host, pid, pidstart FROM aq_locks WHERE name = %s", (name,)
                ).fetchone()
                if holder is None:
                    continue  # released meanwhile: try again
                if not self._stale(*holder):
                    return False
                stolen = conn.execute(_STEAL_LOCK, {**params, "old": holder[0]}).fetchone()
                return stolen is not None
            return False

        if not self._do(op):
            return None
        lock = _PgLock(self, name, token)
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
        return not _holder_alive(pid, pidstart)

    def _release(self, lock: _PgLock) -> None:
        with _LIVE_GUARD:
            _LIVE_TOKENS.discard(lock.token)
        with self._state:
            self._locks.pop(lock.token, None)
            self._lock_job.pop(lock.token, None)
            if lock.job is not None:
                # The attempt that held the job is over: its lease, if still ours, holds nothing.
                self._mine.discard(lock.job)
                self._held.pop(lock.job, None)
                self._last.pop("meta:" + lock.job, None)
        with contextlib.suppress(StoreUnavailable, Exception):
            # Best effort: a row we cannot delete runs out with its lease (and is ours to take again).
            self._do(
                lambda conn, _: conn.execute(
                    "DELETE FROM aq_locks WHERE name = %s AND token = %s", (lock.name, lock.token)
                ),
                retry_for=1.0,
            )

    # -- leases ----------------------------------------------------------------------------------

    def _start_heartbeat(self) -> None:
        with self._state:
            if self._heartbeat is not None and self._heartbeat.is_alive():
                return
            self._heartbeat = threading.Thread(target=self._heartbeat_loop, name="aq-store-heartbeat", daemon=True)
            self._heartbeat.start()

    def _heartbeat_loop(self) -> None:
        conn = None
        while not self._closed.is_set():
            with self._state:
                jobs = list(self._held)
                locks = list(self._locks)
            if not jobs and not locks:
                self._wake.wait(self.beat)
                self._wake.clear()
                continue
            sent = time.monotonic()
            renewed: set[tuple[str, str]] | None
            try:
                if conn is None or conn.closed:
                    conn = self._connect("heartbeat")
                rows = conn.execute(
                    _RENEW, {"jobs": jobs, "locks": locks, "token": self.token, "lease": self.lease}
                ).fetchall()
                renewed = {(kind, value) for kind, value in rows}
            except psycopg.Error:
                renewed = None
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                    conn = None
            self._account(jobs, locks, renewed, sent)
            wait = self.beat - (time.monotonic() - sent) if renewed is not None else min(1.0, self.beat / 3)
            self._closed.wait(max(0.05, wait))
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

    # -- ownership ----------------------------------------------------------------------------

    def claim_meta(self) -> dict[str, Any]:
        return {"pid": self.pid, "pidstart": self.pidstart, "host": self.host, "lease": self.lease}

    def owner_alive(self, job_id: str, meta: Meta) -> bool:
        row = self._do(
            lambda conn, _: conn.execute(
                "SELECT lease_token, lease_host, lease_pid, lease_pidstart, lease_expires > clock_timestamp()"
                " FROM aq_jobs WHERE id = %s",
                (job_id,),
            ).fetchone()
        )
        if row is None:
            return False
        token, host, pid, pidstart, live = row
        if token is None:
            # Never claimed through this store (copied by `aq store migrate`): only its meta can say.
            if meta.get("host") == self.host:
                return _holder_alive(meta.integer("pid"), meta.number("pidstart"))
            return False
        if not live:
            return False  # the lease ran out: the runner is dead or cut off, and has stopped its agent
        if token == self.token:
            with self._state:
                return job_id in self._held
        if host == self.host:
            return _holder_alive(pid, pidstart)  # on its own host a dead runner is known at once
        return True

    # -- change detection ---------------------------------------------------------------------

    def _cheap(self, key: str, fn: Callable[[Any, bool], object]) -> object:
        """A polled value; while the database is away, the last one seen (the poller keeps going)."""
        try:
            value = self._do(fn, retry_for=0.5)
        except StoreUnavailable:
            return self._last.get(key, -1)
        self._last[key] = value
        return value

    def meta_version(self, job_id: str) -> object:
        return self._cheap(
            "meta:" + job_id,
            lambda conn, _: conn.execute("SELECT count(*) FROM aq_meta WHERE job_id = %s", (job_id,)).fetchone()[0],
        )

    def job_version(self, job_id: str, state: State) -> object | None:
        row = self._do(
            lambda conn, _: conn.execute(
                "SELECT rev, octet_length(data) FROM aq_jobs WHERE id = %s AND state = %s",
                (job_id, State(state).value),
            ).fetchone()
        )
        return None if row is None else tuple(row)

    def inbox_token(self) -> object:
        return self._cheap(
            "inbox",
            lambda conn, _: conn.execute("SELECT value FROM aq_counters WHERE name = 'inbox'").fetchone()[0],
        )

    # -- engines ------------------------------------------------------------------------------

    def append_engine_meta(self, engine: str, items: Mapping[str, Any]) -> None:
        if not engine:
            raise AqError(f"bad engine name {engine!r}")
        self._append(_INSERT_ENGINE_META, "aq_engine_meta", "engine", engine, items)

    def read_engine_meta(self, engine: str) -> Meta:
        rows = self._do(
            lambda conn, _: conn.execute(
                "SELECT key, value FROM aq_engine_meta WHERE engine = %s ORDER BY seq", (engine,)
            ).fetchall()
        )
        return Meta([(k, v) for k, v in rows])

    def engine_names_with_meta(self) -> list[str]:
        rows = self._do(
            lambda conn, _: conn.execute("SELECT DISTINCT engine FROM aq_engine_meta ORDER BY engine").fetchall()
        )
        return [name for (name,) in rows]


# -- schema ----------------------------------------------------------------------------------------


def schema_version(conn: Any) -> int | None:
    """The schema version in the database (None: no aq schema there)."""
    try:
        row = conn.execute("SELECT max(version) FROM aq_schema_version").fetchone()
    except psycopg.errors.UndefinedTable:
        return None
    return None if row is None or row[0] is None else int(row[0])


def init_schema(url: str) -> tuple[int, int]:
    """Create or migrate the schema; return (version before, version now). Idempotent."""
    from aq_core import __version__

    store = PgStore(url, local=None, check_schema=False)
    try:

        def op(conn: Any, _: bool) -> tuple[int, int]:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS aq_schema_version (version integer PRIMARY KEY,"
                    " applied timestamptz NOT NULL DEFAULT now(), by_aq text)"
                )
                before = int(conn.execute("SELECT coalesce(max(version), 0) FROM aq_schema_version").fetchone()[0])
                if before > SCHEMA_VERSION:
                    raise AqError(
                        f"store: {store.describe()} has schema version {before}, newer than this aq knows"
                        f" ({SCHEMA_VERSION}): upgrade aq on this host"
                    )
                for version in range(before + 1, SCHEMA_VERSION + 1):
                    for statement in MIGRATIONS[version]:
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO aq_schema_version (version, by_aq) VALUES (%s, %s)", (version, __version__)
                    )
                return before, SCHEMA_VERSION

        return store._do(op)
    finally:
        store.close()


# -- aq store migrate --------------------------------------------------------------------------------


def live_runners(source: FsStore) -> list[Meta]:
    """The runners registered in a filesystem queue that are still running."""
    from aq_core.procs import alive

    return [info for info in source.runners() if alive(info.integer("pid"), info.number("pidstart"))]


def _refuse_live(source: FsStore) -> None:
    live = live_runners(source)
    if live:
        pids = ", ".join(str(info.integer("pid")) for info in live)
        raise AqError(
            f"store migrate: a runner is running on {source.root} (pid {pids}): stop it first (aq --root"
            f" {source.root} stop), then migrate"
        )


def migrate_fs(source: FsStore, url: str) -> dict[str, int]:
    """Copy every job (state, bytes, queued time), every meta line in order and the engine records of
    a filesystem queue into PostgreSQL, in one transaction; return the counts. The source is not
    changed here (the caller marks it migrated)."""
    _refuse_live(source)
    init_schema(url)
    entries = source.list()
    meta_ids = sorted(p.name[: -len(".meta")] for p in (source.root / "meta").glob("*.meta"))
    job_ids = [e.id for e in entries]
    engines = source.engine_names_with_meta()
    counts = {state.value: 0 for state in STATES}
    store = PgStore(url, local=None)
    try:

        def op(conn: Any, _: bool) -> dict[str, int]:
            lines = engine_lines = 0
            with conn.transaction():
                taken = conn.execute(
                    "SELECT id FROM aq_jobs WHERE id = ANY(%(ids)s::text[])"
                    " UNION SELECT DISTINCT job_id FROM aq_meta WHERE job_id = ANY(%(meta)s::text[])"
                    " UNION SELECT DISTINCT engine FROM aq_engine_meta WHERE engine = ANY(%(engines)s::text[])"
                    " LIMIT 3",
                    {"ids": job_ids, "meta": meta_ids, "engines": engines},
                ).fetchall()
                if taken:
                    names = ", ".join(repr(t) for (t,) in taken)
                    raise AqError(f"store migrate: {store.describe()} already has {names}: nothing was copied")
                seen: set[str] = set()
                with conn.cursor().copy("COPY aq_jobs (id, state, data, queued, op_token) FROM STDIN") as copy:
                    for entry in entries:
                        if entry.id in seen:
                            raise AqError(f"store migrate: job {entry.id!r} is in two state folders; fix that first")
                        seen.add(entry.id)
                        copy.write_row(
                            (
                                entry.id,
                                entry.state.value,
                                source.read_job(entry.id, entry.state),
                                entry.queued,
                                secrets.token_hex(8),
                            )
                        )
                        counts[entry.state.value] += 1
                with conn.cursor().copy("COPY aq_meta (job_id, key, value) FROM STDIN") as copy:
                    for job_id in meta_ids:
                        for key, value in source.read_meta(job_id).pairs:
                            copy.write_row((job_id, key, value.replace("\x00", "\ufffd")))
                            lines += 1
                with conn.cursor().copy("COPY aq_engine_meta (engine, key, value) FROM STDIN") as copy:
                    for engine in engines:
                        for key, value in source.read_engine_meta(engine).pairs:
                            copy.write_row((engine, key, value.replace("\x00", "\ufffd")))
                            engine_lines += 1
                conn.execute(PLAN_FROM_META, (job_ids,))
                conn.execute(_BUMP_INBOX)
                # Check what arrived before committing it, and that no runner started meanwhile.
                got_jobs = conn.execute(
                    "SELECT count(*) FROM aq_jobs WHERE id = ANY(%s::text[])", (job_ids,)
                ).fetchone()[0]
                got_lines = conn.execute(
                    "SELECT count(*) FROM aq_meta WHERE job_id = ANY(%s::text[])", (meta_ids,)
                ).fetchone()[0]
                if (got_jobs, got_lines) != (len(job_ids), lines):
                    raise AqError(
                        f"store migrate: copied {got_jobs} of {len(job_ids)} jobs and {got_lines} of {lines}"
                        " meta lines: nothing was committed"
                    )
                _refuse_live(source)
            return {
                **counts,
                "jobs": len(job_ids),
                "meta_lines": lines,
                "engines": len(engines),
                "engine_lines": engine_lines,
            }

        return store._do(op, retry_for=0)
    finally:
        store.close()

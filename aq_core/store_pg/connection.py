"""The connection to PostgreSQL: the URL (aq's ``lease=`` taken out), reconnects and retries.

One ``Connection`` serves one store object (one runner process). A statement whose connection is
lost is retried on a new one, with ``retrying`` set so it can check whether its first try took
effect (every write carries a one-time token). The password never reaches a message.

A statement run very often (the claim; the small reads of a pick or an attempt: a job's meta, the
engines' records, the inbox counter) is a ``Prepared`` one: prepared once on each connection and run
through libpq itself (``Connection.first``, ``Connection.rows``), a quarter of psycopg's own client
CPU a call. A read of many rows stays on psycopg's cursor, whose C code decodes them faster.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aq_core.errors import AqError, StoreUnavailable, UsageError
from aq_core.store import host_id

try:
    import psycopg
    import psycopg.errors
    from psycopg.conninfo import conninfo_to_dict
except ImportError:  # pragma: no cover - the optional dependency is missing
    psycopg = None  # type: ignore[assignment]

DEFAULT_LEASE = 30.0
MIN_LEASE = 1.0

T = TypeVar("T")


def need_psycopg() -> None:
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


def first_line(exc: BaseException | None, secret: str | None) -> str:
    """The first line of an error, for a one-line message (the password masked)."""
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
        if conn is None or conn.closed or getattr(conn, "broken", False):
            return True
        # A pipeline cut off mid-way ("cannot exit pipeline mode while busy") leaves the connection
        # waiting for results that never come: it is as good as lost, and the outcome unknown.
        with contextlib.suppress(Exception):
            status = conn.pgconn.transaction_status
            return status in (psycopg.pq.TransactionStatus.ACTIVE, psycopg.pq.TransactionStatus.UNKNOWN)
    return False


def _check(conn: Any, result: Any, expected: Any) -> None:
    """Raise the psycopg error of a libpq result that is not ``expected``."""
    if result.status != expected:
        if conn.pgconn.status == psycopg.pq.ConnStatus.BAD:  # libpq's own error, no SQLSTATE: lost
            raise psycopg.OperationalError(result.get_error_message("utf-8"))
        raise psycopg.errors.error_from_result(result, encoding=conn.info.encoding)


class Prepared:
    """A statement with ``$1``-style parameters, prepared once on each connection (``Connection.first``)."""

    def __init__(self, name: str, sql: str) -> None:
        self.name = name.encode()
        self.sql = sql.encode()


class Connection:
    """The store's connection to the database, reopened when lost; timeouts follow the lease."""

    def __init__(self, url: str) -> None:
        need_psycopg()
        self.url = url
        self.conninfo, self.lease = parse_url(url)
        self.public = public_url(url)
        self.secret = _password(url)
        self.retry_for = max(1.0, min(5.0, self.lease / 10))
        self.connect_timeout = max(2, min(10, round(self.lease / 10)))
        self.host = host_id()
        self.pid = os.getpid()
        self.closed = threading.Event()
        self._mutex = threading.Lock()
        self._conn: Any = None
        self._connect_failed = 0.0
        self._connect_error = ""
        self._prepared_on: Any = None  # the connection ``_prepared`` names statements of
        self._prepared: set[bytes] = set()
        self._encoding = "utf-8"

    def open(self) -> None:
        """Connect now: a one-line ``AqError`` when the database cannot be reached."""
        try:
            self._conn = self.connect("ops")
        except psycopg.Error as exc:
            raise AqError(f"store: cannot connect to {self.public}: {first_line(exc, self.secret)}") from None

    def connect(self, purpose: str) -> Any:
        """A new connection of its own (the heartbeat keeps one apart from the statements')."""
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

    def do(self, fn: Callable[[Any, bool], T], retry_for: float | None = None) -> T:
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
                            self._conn = conn = self.connect("ops")
                        except psycopg.Error as exc:
                            self._connect_failed = time.monotonic()
                            self._connect_error = first_line(exc, self.secret)
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
            if now >= deadline or self.closed.is_set():
                raise StoreUnavailable(f"store: cannot reach {self.public}: {first_line(error, self.secret)}")
            retrying = True
            time.sleep(min(delay, max(0.0, deadline - now)))
            delay = min(delay * 2, 0.5)

    def first(self, conn: Any, statement: Prepared, args: list[str | None]) -> bytes | None:
        """The first column of the first row ``statement`` returns with ``args`` (as text, no NUL in
        any: libpq would cut it there), None for no row.

        For ``fn`` of ``do`` only (``conn`` is its connection): libpq runs the prepared statement with
        no Python in between; its errors are psycopg's, so a lost connection is retried as any other.
        """
        result = self._run(conn, statement, args)
        return result.get_value(0, 0) if result.ntuples else None

    def rows(self, conn: Any, statement: Prepared, args: list[str | None]) -> list[tuple[str | None, ...]]:
        """Every row ``statement`` returns with ``args``, each column as text (None for NULL); as
        ``first``, for ``fn`` of ``do`` only. The caller converts what is not text.

        PostgreSQL's text holds no NUL, so an argument with one matches no row (libpq would cut it there)."""
        if any(arg is not None and "\x00" in arg for arg in args):
            return []
        result = self._run(conn, statement, args)
        encoding, value = self._encoding, result.get_value
        width = range(result.nfields)
        return [
            tuple(None if (cell := value(row, col)) is None else cell.decode(encoding) for col in width)
            for row in range(result.ntuples)
        ]

    def _run(self, conn: Any, statement: Prepared, args: list[str | None]) -> Any:
        pgconn = conn.pgconn
        if self._prepared_on is not conn:
            self._prepared_on, self._prepared = conn, set()
            self._encoding = conn.info.encoding
        encoded = [None if a is None else a.encode(self._encoding) for a in args]
        for _ in range(2):
            if statement.name not in self._prepared:
                _check(conn, pgconn.prepare(statement.name, statement.sql), psycopg.pq.ExecStatus.COMMAND_OK)
                self._prepared.add(statement.name)
            result = pgconn.exec_prepared(statement.name, encoded)
            if result.error_field(psycopg.pq.DiagnosticField.SQLSTATE) != b"26000":
                break
            self._prepared.clear()  # the session forgot it (DISCARD ALL, a pooler): prepare it again
        _check(conn, result, psycopg.pq.ExecStatus.TUPLES_OK)
        return result

    def close(self) -> None:
        """Close the statements' connection; ``closed`` tells every loop to stop."""
        self.closed.set()
        with self._mutex:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None

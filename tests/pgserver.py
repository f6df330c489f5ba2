"""A private PostgreSQL server for the tests and benchmarks: loopback only, trust auth, a temp dir.

PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` system user (or
``nobody`` when there is none) through ``runuser``; its data directory and unix socket live in a
temp dir owned by that user. The tests get one server a session and a fresh database a test through
the ``pg_server`` and ``new_db`` fixtures of ``tests/conftest.py``; ``PgServer`` can be used on its own
(``benchmarks/claims.py``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

SUPERUSER = "aq"
BINARIES = ("initdb", "pg_ctl", "postgres")
# Debian installs the server binaries here (one folder per major version), not on PATH.
PG_LIB = Path("/usr/lib/postgresql")


def bin_dirs(base: Path | None = None) -> list[Path]:
    """Return ``<base or PG_LIB>/<version>/bin`` folders, newest version first."""
    base = base or PG_LIB
    try:
        versions = [p for p in base.iterdir() if p.name.isdigit() and (p / "bin").is_dir()]
    except OSError:
        return []
    return [p / "bin" for p in sorted(versions, key=lambda p: int(p.name), reverse=True)]


def find_binary(name: str, base: Path | None = None) -> str | None:
    """Return the path of a PostgreSQL binary: on PATH, else in Debian's newest versioned folder."""
    found = shutil.which(name)
    if found:
        return found
    for folder in bin_dirs(base):
        path = folder / name
        if os.access(path, os.X_OK):
            return str(path)
    return None


def available() -> bool:
    return all(find_binary(n) for n in BINARIES)


def _run_as() -> str | None:
    """The unprivileged user to run the server as (None: the current user, not root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and there is no postgres or nobody user to run PostgreSQL as")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PgServer:
    """One PostgreSQL cluster in a temp dir, listening on 127.0.0.1:<free port>."""

    def __init__(self, durable: bool = False, crash_safe: bool = False) -> None:
        self.durable = durable
        # Survives the server's own crash (``pg_ctl stop -m immediate``), not the machine's: commits
        # reach the operating system before they return, but are not fsynced (for fault soaks).
        self.crash_safe = crash_safe
        self.user = _run_as()
        self.dir = Path(tempfile.mkdtemp(prefix="aq-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = 0
        self.running = False
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        os.chmod(self.dir, 0o700)
        atexit.register(self.destroy)  # a crashed test run leaves no server behind

    # -- process control ---------------------------------------------------------------------

    def _cmd(self, *argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        binary = find_binary(argv[0]) or argv[0]
        full = [binary, *argv[1:]]
        if self.user:
            full = ["runuser", "-u", self.user, "--", *full]
        result = subprocess.run(full, cwd=self.dir, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:2])} failed ({result.returncode}): {result.stderr}{self._log_tail()}")
        return result

    def _log_tail(self) -> str:
        try:
            return "\n--- server log ---\n" + self.log.read_text()[-3000:]
        except OSError:
            return ""

    def init(self) -> None:
        args = ["initdb", "-D", str(self.data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--no-locale"]
        if not self.durable:
            args.append("--no-sync")
        self._cmd(*args)

    def start(self) -> PgServer:
        """Create the cluster on first use and start the server (on the same port on a restart)."""
        if not self.data.exists():
            self.init()
        options = [
            "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={self.dir}",
            "-c max_connections=200",
            "-c shared_buffers=32MB",
        ]
        if not self.durable:
            options += ["-c fsync=off", "-c full_page_writes=off"]
            if not self.crash_safe:
                options.append("-c synchronous_commit=off")
        for _ in range(5):
            port = self.port or free_port()
            result = self._cmd(
                "pg_ctl",
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-w",
                "-t",
                "60",
                "-o",
                " ".join([f"-p {port}", *options]),
                "start",
                check=False,
            )
            if result.returncode == 0:
                self.port = port
                self.running = True
                return self
            if self.port:  # a restart must keep its port (clients have its URL)
                time.sleep(0.5)
        raise RuntimeError(f"pg_ctl start failed: {result.stderr}{self._log_tail()}")

    def stop(self, mode: str = "fast") -> None:
        if self.running:
            self._cmd("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)
            self.running = False

    def destroy(self) -> None:
        """Stop the server and remove its directory."""
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- clients -----------------------------------------------------------------------------

    def url(self, dbname: str = "postgres", **params: object) -> str:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}" + (f"?{query}" if query else "")

    def sql(self, statement: str, params: tuple = (), dbname: str = "postgres") -> list[tuple]:
        import psycopg

        with psycopg.connect(self.url(dbname), autocommit=True, application_name="aq-tests") as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database; return its name."""
        name = name or "aq_" + secrets.token_hex(6)
        self.sql(f'CREATE DATABASE "{name}"')
        return name

    def terminate(self, dbname: str, application_prefix: str = "aq ") -> int:
        """``pg_terminate_backend`` every connection of aq clients to ``dbname``; return how many."""
        rows = self.sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = %s AND application_name LIKE %s AND pid <> pg_backend_pid()",
            (dbname, application_prefix + "%"),
        )
        return int(rows[0][0])


def dbname(url: str) -> str:
    """The database name of a server URL made by :meth:`PgServer.url`."""
    return url.rsplit("/", 1)[1].split("?")[0]


def open_store(url: str, local: Path):  # -> PgStore
    """A ``PgStore`` on ``url`` with its host-local files in ``local`` (aq_core imported here, not by the benchmarks)."""
    from aq_core.store_pg import PgStore

    return PgStore(url, local=local)


def make_version_1(url: str, *rows: str) -> None:
    """Make the empty database at ``url`` as ``aq store init`` of schema version 1 made it, then run ``rows``
    (SQL statements, e.g. the jobs it held)."""
    import psycopg

    from aq_core.store_pg.schema import MIGRATIONS

    statements = [
        "CREATE TABLE aq_schema_version (version integer PRIMARY KEY, applied timestamptz NOT NULL DEFAULT now(),"
        " by_aq text)",
        *MIGRATIONS[1],
        "INSERT INTO aq_schema_version (version) VALUES (1)",
        *rows,
    ]
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.encode())  # bytes: no parameters, a '%' is a '%'


# ``new_db(lease=None, init=True)``: the URL of a fresh database (the ``new_db`` fixture).
NewDb = Callable[..., str]


def start_server(durable: bool = False, crash_safe: bool = False) -> PgServer:
    return PgServer(durable=durable, crash_safe=crash_safe).start()

"""The statements that take and release PostgreSQL's lock rows, and whether a holder is alive.

A lock is a row of ``aq_locks`` (name, holder token, host, pid, expiry on the database's clock);
``leases.PgCoordination`` owns their book-keeping and renewal.
"""

from __future__ import annotations

import os
from typing import Any

LEASE_SQL = "clock_timestamp() + make_interval(secs => %(lease)s)"
TAKE_LOCK = f"""
INSERT INTO aq_locks (name, token, host, pid, pidstart, expires_at)
VALUES (%(name)s, %(token)s, %(host)s, %(pid)s, %(pidstart)s, {LEASE_SQL})
ON CONFLICT (name) DO UPDATE SET token = EXCLUDED.token, host = EXCLUDED.host, pid = EXCLUDED.pid,
    pidstart = EXCLUDED.pidstart, acquired = clock_timestamp(), expires_at = EXCLUDED.expires_at
WHERE aq_locks.expires_at <= clock_timestamp()
RETURNING token
"""
STEAL_LOCK = f"""
UPDATE aq_locks SET token = %(token)s, host = %(host)s, pid = %(pid)s, pidstart = %(pidstart)s,
    acquired = clock_timestamp(), expires_at = {LEASE_SQL}
WHERE name = %(name)s AND token = %(old)s
RETURNING token
"""


def holder_alive(pid: int | None, pidstart: float | None) -> bool:
    """Whether the process ``pid`` (started at ``pidstart``, when known) still runs on this host."""
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


def delete_lock(conn: Any, name: str, token: str) -> None:
    """Release a lock row in one round trip, committed without waiting for the disk.

    A release lost in a server crash leaves the row as a release that never reached the database
    does (handled already): held until its lease runs out, or until its holder is seen dead (or not
    live, ``_LIVE_TOKENS``) on its own host. Holding a lock longer is always safe; the lock's taking
    (or the claim that confirms it) and everything done under it stay durable commits.
    """
    with conn.pipeline(), conn.transaction():
        conn.execute("SET LOCAL synchronous_commit TO off")
        conn.execute("DELETE FROM aq_locks WHERE name = %s AND token = %s", (name, token))


def write(conn: Any, statement: str, params: dict, durable: bool) -> tuple | None:
    """Run a one-row write; ``durable=False``: in one round trip that does not wait for the disk."""
    if durable:
        return conn.execute(statement, params).fetchone()
    with conn.pipeline(), conn.transaction():
        conn.execute("SET LOCAL synchronous_commit TO off")
        cursor = conn.execute(statement, params)
    return cursor.fetchone()

"""The statements that take and release PostgreSQL's lock rows, and whether a holder is alive.

A lock is a row of ``aq_locks`` (name, holder token, host, pid, expiry on the database's clock);
``leases.PgCoordination`` owns their book-keeping and renewal.
"""

from __future__ import annotations

import os
from typing import Any

LEASE_SQL = "clock_timestamp() + make_interval(secs => %(lease)s)"
# A one-row relation whose evaluation makes the statement's own transaction commit without waiting
# for the disk: ``set_config(..., true)`` is ``SET LOCAL``, and the commit at the statement's end reads
# it. A write joined with it is one message, where ``BEGIN``, ``SET LOCAL``, the write and ``COMMIT``
# in a pipeline were four (about a sixth of the client's CPU and a quarter of the server's). A write
# that finds no row to change never evaluates it, and then has nothing to commit either.
NO_WAIT = "(SELECT set_config('synchronous_commit', 'off', true)) AS no_wait"
_TAKE = """
INSERT INTO aq_locks (name, token, host, pid, pidstart, expires_at)
SELECT %(name)s, %(token)s, %(host)s, %(pid)s, %(pidstart)s, {lease}{source}
ON CONFLICT (name) DO UPDATE SET token = EXCLUDED.token, host = EXCLUDED.host, pid = EXCLUDED.pid,
    pidstart = EXCLUDED.pidstart, acquired = clock_timestamp(), expires_at = EXCLUDED.expires_at
WHERE aq_locks.expires_at <= clock_timestamp()
RETURNING token
"""
_STEAL = """
UPDATE aq_locks SET token = %(token)s, host = %(host)s, pid = %(pid)s, pidstart = %(pidstart)s,
    acquired = clock_timestamp(), expires_at = {lease}{source}
WHERE name = %(name)s AND token = %(old)s
RETURNING aq_locks.token
"""
# (durable, without waiting for the disk)
TAKE_LOCK = (_TAKE.format(lease=LEASE_SQL, source=""), _TAKE.format(lease=LEASE_SQL, source=" FROM " + NO_WAIT))
STEAL_LOCK = (_STEAL.format(lease=LEASE_SQL, source=""), _STEAL.format(lease=LEASE_SQL, source=" FROM " + NO_WAIT))
# The taking and, when it did not apply, the holder's row in the same round trip: (True, token,
# NULLs) when taken, (False, token, host, pid, pidstart) of the holder, no row when the holder's
# commit came after this statement's snapshot (or it let go meanwhile): the caller tries again.
_OR_HOLDER = """
WITH taken AS ({take})
SELECT true, token, NULL, NULL, NULL FROM taken
UNION ALL
SELECT false, token, host, pid, pidstart FROM aq_locks WHERE name = %(name)s AND NOT EXISTS (SELECT 1 FROM taken)
"""
TAKE_LOCK_OR_HOLDER = tuple(_OR_HOLDER.format(take=take) for take in TAKE_LOCK)
_DELETE = f"DELETE FROM aq_locks USING {NO_WAIT} WHERE name = %s AND token = %s"


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


def delete_lock(conn: Any, name: str, token: str, with_write: tuple[str, tuple] | None = None) -> None:
    """Release a lock row in one round trip, committed without waiting for the disk; ``with_write``:
    a (statement, parameters) write that need not wait either, sent in the same statement.

    A release lost in a server crash leaves the row as a release that never reached the database
    does (handled already): held until its lease runs out, or until its holder is seen dead (or not
    live, ``_LIVE_TOKENS``) on its own host. Holding a lock longer is always safe; the lock's taking
    (or the claim that confirms it) and everything done under it stay durable commits.
    """
    if with_write is None:
        conn.execute(_DELETE, (name, token))
    else:
        conn.execute(f"WITH written AS ({with_write[0]}) {_DELETE}", (*with_write[1], name, token))


def write(conn: Any, statement: tuple[str, str], params: dict, durable: bool) -> tuple | None:
    """Run a one-row write (``TAKE_LOCK``, ``TAKE_LOCK_OR_HOLDER``, ``STEAL_LOCK``); ``durable=False``:
    without waiting for the disk."""
    return conn.execute(statement[0] if durable else statement[1], params).fetchone()

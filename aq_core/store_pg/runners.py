"""Every host's runners in PostgreSQL: who runs, and ``aq stop`` reaching all of them.

A runner registers a row (``aq_runners``) when it starts, renewed with its leases by the heartbeat
and deleted when it exits; a row whose time ran out is a runner that died. ``aq stop`` marks every
live row; each runner looks at its own row about once a second and, when marked, stops as on
SIGTERM (checkpoint, jobs back in the inbox, exit). ``aq stop`` waits until the rows are gone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aq_core.store_pg.connection import Connection

REGISTER = """
INSERT INTO aq_runners (token, host, pid, pidstart, expires_at)
VALUES (%(token)s, %(host)s, %(pid)s, %(pidstart)s, clock_timestamp() + make_interval(secs => %(lease)s))
ON CONFLICT (token) DO UPDATE SET expires_at = EXCLUDED.expires_at
"""
# Rows of runners that died long ago tell nobody anything (and would only grow the table).
_FORGET = "DELETE FROM aq_runners WHERE expires_at < clock_timestamp() - interval '1 day'"
_ASK = """
UPDATE aq_runners SET stop_requested = coalesce(stop_requested, clock_timestamp())
WHERE expires_at > clock_timestamp()
RETURNING token, host, pid, pidstart
"""
_LEFT = "SELECT token FROM aq_runners WHERE token = ANY(%s::text[]) AND expires_at > clock_timestamp()"
_LIVE = "SELECT host, pid, pidstart FROM aq_runners WHERE expires_at > clock_timestamp()"


def register(conn: Connection, token: str, pid: int, pidstart: float | None, lease: float) -> None:
    params = {"token": token, "host": conn.host, "pid": pid, "pidstart": pidstart, "lease": lease}

    def op(db: Any, _: bool) -> None:
        db.execute(_FORGET)
        db.execute(REGISTER, params)

    conn.do(op)


def unregister(conn: Connection, token: str) -> None:
    conn.do(lambda db, _: db.execute("DELETE FROM aq_runners WHERE token = %s", (token,)), retry_for=1.0)


def stop_requested(conn: Connection, token: str) -> bool:
    row = conn.do(
        lambda db, _: db.execute(
            "SELECT stop_requested IS NOT NULL FROM aq_runners WHERE token = %s", (token,)
        ).fetchone(),
        retry_for=0.5,
    )
    return bool(row and row[0])


def request_stop(
    conn: Connection, wait: float, alive: Callable[[int, float | None], bool]
) -> tuple[list[str], list[str]]:
    """Ask every live runner, on every host, to stop; wait up to ``wait`` seconds for them to exit.

    Return (the runners asked, those still running), each named ``host pid N``. A runner of this
    host whose process is gone counts as stopped at once; another host's dead runner, when its row
    runs out (``alive(pid, pidstart)`` says whether a process of this host still runs).
    """
    rows = conn.do(lambda db, _: db.execute(_ASK).fetchall())
    names = {token: f"{host} pid {pid}" for token, host, pid, _ in rows}
    here = {token: (pid, pidstart) for token, host, pid, pidstart in rows if host == conn.host}
    deadline = time.monotonic() + wait
    while True:
        live = {token for (token,) in conn.do(lambda db, _: db.execute(_LEFT, (list(names),)).fetchall())}
        left = [t for t in names if t in live and (t not in here or alive(*here[t]))]
        if not left or time.monotonic() >= deadline:
            return sorted(names.values()), sorted(names[t] for t in left)
        time.sleep(0.1)


def live(conn: Connection, alive: Callable[[int, float | None], bool]) -> list[str]:
    """Every host's live runners, each named ``HOST pid N``: a row that has not run out and, on this
    host, a process that still runs (a runner killed here is seen dead at once, as by ``aq stop``)."""
    rows = conn.do(lambda db, _: db.execute(_LIVE).fetchall())
    return sorted(f"{host} pid {pid}" for host, pid, pidstart in rows if host != conn.host or alive(pid, pidstart))

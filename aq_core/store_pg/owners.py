"""Whether the runner that claimed a job in ``building`` may still run it, as one host can tell.

A job's lease names the runner that claimed it (token, host, pid and start time) and runs out on
the database's clock. ``leases.PgCoordination`` asks here for recovery's two questions: is this
job's owner alive (``owner_alive``), and which jobs whose lock recovery could not take are orphans
this host would recover (``orphans_locked``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aq_core.meta import Meta
from aq_core.store_pg.lockrows import holder_alive

# A job whose lease ran out is left to its own host for one more lease when a runner lives there:
# only that host can end a leftover agent and count an attempt whose start its runner never recorded.
_COLUMNS = """lease_token, lease_host, lease_pid, lease_pidstart, lease_expires > clock_timestamp(),
    lease_expires > clock_timestamp() - make_interval(secs => %(lease)s) AND EXISTS (
        SELECT 1 FROM aq_runners r WHERE r.host = aq_jobs.lease_host AND r.token <> aq_jobs.lease_token
          AND r.expires_at > clock_timestamp())"""
_OWNER = f"SELECT {_COLUMNS} FROM aq_jobs WHERE id = %(id)s"
# The same for jobs in building, with their lock's live holder (a row whose lease ran out holds nothing).
_OWNERS_AND_HOLDERS = f"""
SELECT aq_jobs.id, {_COLUMNS}, l.host, l.pid
FROM aq_jobs LEFT JOIN aq_locks l ON l.name = 'job:' || aq_jobs.id AND l.expires_at > clock_timestamp()
WHERE aq_jobs.id = ANY(%(ids)s::text[]) AND aq_jobs.state = 'building'
"""


class Owners:
    """This host's view of claims: ``host`` and ``token`` are the asking store's; ``mine(job_id)``
    says whether a claim of that store's is still held."""

    def __init__(self, conn: Any, host: str, token: str, lease: float, mine: Callable[[str], bool]) -> None:
        self.conn = conn
        self.host = host
        self.token = token
        self.lease = lease
        self.mine = mine

    def owner_alive(self, job_id: str, meta: Meta) -> bool:
        params = {"id": job_id, "lease": self.lease}
        row = self.conn.do(lambda conn, _: conn.execute(_OWNER, params).fetchone())
        if row is None:
            return False
        if row[0] is None:
            # Never claimed through this store (copied by `aq store migrate`): only its meta can say.
            if meta.get("host") == self.host:
                return holder_alive(meta.integer("pid"), meta.number("pidstart"))
            return False
        return self._alive(job_id, *row)

    def orphans_locked(self, job_ids: list[str]) -> dict[str, str | None]:
        """Of ``job_ids`` (jobs whose lock recovery could not take), the orphans recovery here would
        take, each with its lock's holder ("host pid N"; None once it let go)."""
        if not job_ids:
            return {}
        params = {"ids": job_ids, "lease": self.lease}
        rows = self.conn.do(lambda conn, _: conn.execute(_OWNERS_AND_HOLDERS, params).fetchall())
        left: dict[str, str | None] = {}
        for job_id, *owner, holder_host, holder_pid in rows:
            # A job never claimed through this store (no token): its meta would say; left to others.
            if owner[0] is not None and not self._alive(job_id, *owner):
                left[job_id] = f"{holder_host} pid {holder_pid}" if holder_host is not None else None
        return left

    def _alive(
        self, job_id: str, token: str, host: str, pid: int, pidstart: float | None, live: bool, host_recovers: bool
    ) -> bool:
        if not live:
            # The lease ran out: the runner is dead or cut off, and has stopped its agent.
            return host != self.host and bool(host_recovers)
        if token == self.token:
            return self.mine(job_id)
        if host == self.host:
            return holder_alive(pid, pidstart)  # on its own host a dead runner is known at once
        return True

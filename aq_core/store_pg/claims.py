"""The claim's statement: one ``UPDATE`` that takes a waiting job, with the claimer's lease.

It takes only a job whose ``not_before`` has passed and whose ``after:`` jobs are all done, and
skips a row another claim holds (``SKIP LOCKED``): that claim decides it. ``CLAIM`` is the
statement with psycopg's named parameters (``store`` adds a check of the locks to confirm to it);
``CLAIM_PREPARED`` the same with positional ones, prepared once on each connection, for the common
claim with no lock to confirm: in a race for a job most claims lose, and each is a round trip
whose client CPU is mostly psycopg's own (``connection.Connection.first``).
"""

from __future__ import annotations

import re

from aq_core.store_pg.connection import Prepared
from aq_core.store_pg.lockrows import LEASE_SQL

CLAIM = f"""
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

#: ``CLAIM_PREPARED``'s parameters, in order: the job's, then the claimer's (the same every claim).
CLAIM_ARGS = ("id", "src", "nonce", "token", "host", "pid", "pidstart", "lease")


def positional(sql: str, names: tuple[str, ...]) -> str:
    """``sql`` with each ``%(name)s`` as ``$n``, n the name's place in ``names`` (from 1)."""
    return re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m.group(1)) + 1}", sql)


CLAIM_PREPARED = Prepared("aq_claim", positional(CLAIM, CLAIM_ARGS))

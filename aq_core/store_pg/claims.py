"""The claim's statement: one ``UPDATE`` that takes a waiting job, with the claimer's lease.

It takes only a job whose ``not_before`` has passed and whose ``after:`` jobs are all done, and
skips a row another claim holds (``SKIP LOCKED``): that claim decides it. ``CLAIM`` is the
statement with psycopg's named parameters;
``CLAIM_PREPARED`` the same with positional ones, prepared once on each connection, and
``CLAIM_CONFIRMING_PREPARED`` the claim that also confirms the locks this thread took for it
(``HELD``): in a race for a job most claims lose, and each is a round trip whose client CPU was
mostly psycopg's own (``connection.Connection.first``).
"""

from __future__ import annotations

import re

from aq_core.store_pg.connection import Prepared, psycopg
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

# This thread's locks taken without waiting for the disk (``try_lock_to_claim``) are all still held.
HELD = (
    " AND (SELECT count(*) FROM aq_locks WHERE name = ANY(%(lock_names)s::text[])"
    " AND token = ANY(%(lock_tokens)s::text[])) = %(locks)s"
)
CLAIM_CONFIRMING = CLAIM.replace("FOR UPDATE OF j SKIP LOCKED", HELD + "\n    FOR UPDATE OF j SKIP LOCKED")

#: ``CLAIM_PREPARED``'s parameters, in order: the job's, then the claimer's (the same every claim);
#: ``CLAIM_CONFIRMING_PREPARED``'s, then the locks to confirm (``text_array``).
CLAIM_ARGS = ("id", "src", "nonce", "token", "host", "pid", "pidstart", "lease")
CONFIRMING_ARGS = (*CLAIM_ARGS, "lock_names", "lock_tokens", "locks")


def positional(sql: str, names: tuple[str, ...]) -> str:
    """``sql`` with each ``%(name)s`` as ``$n``, n the name's place in ``names`` (from 1)."""
    return re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m.group(1)) + 1}", sql)


def text_array(values: list[str]) -> str:
    """A ``text[]`` literal of ``values``: each quoted, its backslashes and quotes escaped."""
    if any("\x00" in v for v in values):
        raise psycopg.DataError("a lock's name holds a NUL (0x00)")  # as psycopg itself would: never cut short
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


CLAIM_PREPARED = Prepared("aq_claim", positional(CLAIM, CLAIM_ARGS))
CLAIM_CONFIRMING_PREPARED = Prepared("aq_claim_confirming", positional(CLAIM_CONFIRMING, CONFIRMING_ARGS))

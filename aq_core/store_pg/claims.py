"""The claim's statement: one ``UPDATE`` that takes a waiting job, with the claimer's lease.

It takes only a job whose ``not_before`` has passed and whose ``after:`` jobs are all done, and
skips a row another claim holds (``SKIP LOCKED``): that claim decides it. ``CLAIM`` is the
statement with psycopg's named parameters;
``CLAIM_PREPARED`` the same with positional ones, prepared once on each connection, and
``CLAIM_CONFIRMING_PREPARED`` the claim that also confirms the locks this thread took for it
(``HELD``): in a race for a job most claims lose, and each is a round trip whose client CPU was
mostly psycopg's own (``connection.Connection.first``).

A claim commits without waiting for the disk (its statement turns ``synchronous_commit`` off for its
own transaction). The first append to the job after it (``CONFIRM_CLAIM``, the runner's ``claimed``
lines, before the work tree or the agent) waits for the disk and applies only while the claim is in
the database; the server's log is flushed in order, so that commit makes the claim durable. A claim
lost in a server crash fails it, and the runner lets the job go without starting anything.
"""

from __future__ import annotations

import re
from typing import Any

from aq_core.store import State
from aq_core.store_pg.connection import Connection, Prepared, psycopg
from aq_core.store_pg.lockrows import LEASE_SQL
from aq_core.store_pg.metalines import INSERT_ONCE

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
RETURNING id, set_config('synchronous_commit', 'off', true)
"""

# This thread's locks taken without waiting for the disk (``try_lock_to_claim``) are all still held.
HELD = (
    " AND (SELECT count(*) FROM aq_locks WHERE name = ANY(%(lock_names)s::text[])"
    " AND token = ANY(%(lock_tokens)s::text[])) = %(locks)s"
)
# The runner's claim also returns the job's meta lines as they were at the claim, as JSON pairs: the
# attempt's first read of them (``PgStore.read_meta``) needs no round trip of its own.
META_AT_CLAIM = (
    ", (SELECT json_agg(json_build_array(m.key, m.value) ORDER BY m.seq) FROM aq_meta m WHERE m.job_id = aq_jobs.id)"
)
CLAIM_CONFIRMING = CLAIM.replace("FOR UPDATE OF j SKIP LOCKED", HELD + "\n    FOR UPDATE OF j SKIP LOCKED").replace(
    "'off', true)\n", "'off', true)" + META_AT_CLAIM + "\n"
)

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


# The first write to a job after its claim: its meta lines (``metalines.INSERT_ONCE``), applied only
# while the claim is in the database (the job in building with the claimer's lease). It waits for the
# disk, and so makes the claim (and the locks before it) durable: the server's log is flushed in order.
# It answers the job's count of lines after it (``coord.meta_seen``) and whether the claim was there.
CONFIRM_CLAIM = (
    "WITH held AS (SELECT 1 FROM aq_jobs WHERE id = %(id)s AND state = 'building' AND lease_token = %(token)s),"
    f" added AS ({INSERT_ONCE.replace('AS t(k, v, b, n)', 'AS t(k, v, b, n) CROSS JOIN held')} RETURNING 1)"
    " SELECT (SELECT count(*) FROM aq_meta WHERE job_id = %(id)s) + (SELECT count(*) FROM added),"
    " EXISTS (SELECT 1 FROM held)"
)


def applied(conn: Any, job_id: str, dst: State, nonce: str) -> bool:
    """Whether the transition to ``dst`` with ``nonce`` was committed (its outcome was unknown)."""
    row = conn.execute("SELECT state, op_token FROM aq_jobs WHERE id = %s", (job_id,)).fetchone()
    return row is not None and row[0] == dst.value and row[1] == nonce


CLAIM_PREPARED = Prepared("aq_claim", positional(CLAIM, CLAIM_ARGS))
CLAIM_CONFIRMING_PREPARED = Prepared("aq_claim_confirming", positional(CLAIM_CONFIRMING, CONFIRMING_ARGS))

# The runner's claim with its first meta lines (``claimed``, the runner's pid and host, ``cwd``...),
# one statement and one durable commit: the claim, the locks it confirms (``HELD``; none: a count of
# 0) and the lines reach the disk together, before the work tree or the agent. The meta it returns is
# the snapshot's, before the lines (a statement's parts do not see each other's writes).
NOTING_ARGS = (*CONFIRMING_ARGS, "keys", "values", "batch")
CLAIM_NOTING = (
    "WITH claimed AS ("
    + CLAIM_CONFIRMING.replace(", set_config('synchronous_commit', 'off', true)", "")
    + "), added AS (INSERT INTO aq_meta (job_id, key, value, batch)"
    " SELECT c.id, t.k, t.v, %(batch)s FROM claimed c"
    " CROSS JOIN unnest(%(keys)s::text[], %(values)s::text[]) WITH ORDINALITY AS t(k, v, n) ORDER BY t.n)"
    " SELECT * FROM claimed"
)
CLAIM_NOTING_PREPARED = Prepared("aq_claim_noting", positional(CLAIM_NOTING, NOTING_ARGS))


def claim_noting(
    conn: Connection, args: list[str], unconfirmed: list, keys: list[str], values: list[str]
) -> str | None:
    """``claim_prepared`` with the meta lines ``keys``/``values`` appended in the claim's statement,
    which waits for the disk: the claim is durable when this returns, and needs no confirming append.

    None when it did not apply; else the job's meta lines before the claim, as JSON ("" when a
    retry found its first try applied: not known)."""
    job_id, nonce = args[0], args[2]
    names, tokens = text_array([k.name for k in unconfirmed]), text_array([k.token for k in unconfirmed])
    full = [*args, names, tokens, str(len(unconfirmed)), text_array(keys), text_array(values), nonce]

    def op(db: Any, retrying: bool) -> str | None:
        if retrying and applied(db, job_id, State.BUILDING, nonce):
            return ""  # its lines were committed with it
        rows = conn.rows(db, CLAIM_NOTING_PREPARED, full)
        return (rows[0][1] or "[]") if rows else None

    return conn.do(op)


def claim_prepared(conn: Connection, args: list[str], unconfirmed: list) -> str | None:
    """A claim through ``CLAIM_PREPARED`` with ``args`` (``CLAIM_ARGS``' values), or with locks to
    confirm (``try_lock_to_claim``), ``CLAIM_CONFIRMING_PREPARED``: it applies only while they are held.

    None when it did not apply; else the job's meta lines at the claim as JSON (``META_AT_CLAIM``),
    or "" when not known (no locks to confirm, or a retry found its first try applied)."""
    job_id, nonce, statement = args[0], args[2], CLAIM_PREPARED
    if unconfirmed:
        names, tokens = text_array([k.name for k in unconfirmed]), text_array([k.token for k in unconfirmed])
        args, statement = [*args, names, tokens, str(len(unconfirmed))], CLAIM_CONFIRMING_PREPARED

    def op(db: Any, retrying: bool) -> str | None:
        if retrying and applied(db, job_id, State.BUILDING, nonce):
            return ""
        if not unconfirmed:
            return None if conn.first(db, statement, args) is None else ""
        rows = conn.rows(db, statement, args)
        return (rows[0][2] or "[]") if rows else None

    return conn.do(op)

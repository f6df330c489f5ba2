"""The PostgreSQL schema: its tables, versioned migrations (``aq store init``) and the version check.

Tables:

- ``aq_jobs``: one row per job: its state, the job file's bytes, when it was queued, and the lease of
  the runner that claimed it (``lease_token``, ``lease_host``, ``lease_pid``, ``lease_expires``);
  since version 2 also its plan (``after``, ``priority``, ``not_before``), from its meta at add, so
  the claim itself checks that every job it waits for is done.
- ``aq_meta`` / ``aq_engine_meta``: insert-only ``key``/``value`` rows in ``seq`` order (a trigger
  refuses UPDATE and DELETE); the last value of a key wins, as on disk.
- ``aq_locks``: named locks as lease rows (holder token, host, pid, ``expires_at``).
- ``aq_counters``: ``inbox`` counts transitions into the inbox (idle runners poll it).
- ``aq_runners`` (version 3): every host's live runners, renewed like a lease, and ``aq stop``'s
  request to each.
- version 4: ``aq_jobs.row_token``, ``row_json``, ``row_summary``: a finished job's status row, kept
  for the transition it was computed after (``rows``); the migration computes it for finished jobs.
- version 5: beside each kept row, its status table cells (``row_layout``, ``row_cells``) and typed
  figures (``row_finished``, ``row_engine``, ``row_result``, ``row_duration``, ``spend_*``), so a host
  with no rows cache prints ``aq status`` and ``aq insights`` from the server (``reads``); the
  migration computes them from the kept rows.
- ``aq_schema_version``: one row per migration applied.
"""

from __future__ import annotations

from typing import Any

from aq_core.errors import AqError
from aq_core.store_pg.connection import Connection, psycopg

SCHEMA_VERSION = 5
_SCHEMA_LOCK = 0x6171_5F73_6368  # pg_advisory_xact_lock key for `aq store init` (a transaction lock only)

# A job's plan columns from the last ``after``, ``priority`` and ``not_before`` of its meta (written
# by ``aq add``). Values meta cannot parse are left out.
_PLAN_COLUMNS = r"""
UPDATE aq_jobs j SET
    after = coalesce((SELECT string_to_array(value, ',') FROM aq_meta m
                      WHERE m.job_id = j.id AND m.key = 'after' ORDER BY m.seq DESC LIMIT 1), '{}'),
    priority = coalesce((SELECT value::integer FROM aq_meta m
                         WHERE m.job_id = j.id AND m.key = 'priority' AND m.value ~ '^-?[0-9]{1,9}$'
                         ORDER BY m.seq DESC LIMIT 1), 0),
    not_before = (SELECT value::double precision FROM aq_meta m
                  WHERE m.job_id = j.id AND m.key = 'not_before' AND m.value ~ '^[0-9]{1,12}(\.[0-9]+)?$'
                  ORDER BY m.seq DESC LIMIT 1)
"""
#: The plan columns of the jobs ``%s`` names (a text[] of ids: ``aq store migrate``'s batches).
PLAN_FROM_META = _PLAN_COLUMNS + "WHERE j.id = ANY(%s::text[])\n"
#: Those of the one job ``%s`` names (``aq add``): once prepared, the server keeps its plan, where
#: ``= ANY`` of a one-id array was planned afresh at every call (a custom plan each time).
PLAN_FROM_META_ONE = _PLAN_COLUMNS + "WHERE j.id = %s\n"

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
    # aq stop on every host: each runner's row, renewed by its heartbeat, carries a stop request.
    3: [
        """CREATE TABLE aq_runners (
            token text PRIMARY KEY,
            host text NOT NULL,
            pid integer NOT NULL,
            pidstart double precision,
            started timestamptz NOT NULL DEFAULT clock_timestamp(),
            expires_at timestamptz NOT NULL,
            stop_requested timestamptz
        )""",
        "CREATE INDEX aq_runners_by_host ON aq_runners (host, expires_at)",
    ],
    # Finished jobs' status rows on the server: a host's first read fetches them (``rows``).
    4: [
        "ALTER TABLE aq_jobs ADD COLUMN row_token text",
        "ALTER TABLE aq_jobs ADD COLUMN row_json text",
        "ALTER TABLE aq_jobs ADD COLUMN row_summary text",
        # aq_jobs_by_priority (state, priority, queued, id) serves every look-up by state: one index
        # less to write at each transition.
        "DROP INDEX aq_jobs_by_state",
    ],
    # What the server needs to print and sum kept rows for a host with no rows cache (``reads``).
    5: [
        "ALTER TABLE aq_jobs ADD COLUMN row_layout text, ADD COLUMN row_cells text,"
        " ADD COLUMN row_finished double precision, ADD COLUMN row_engine text, ADD COLUMN row_result text,"
        " ADD COLUMN row_duration double precision, ADD COLUMN spend_engine text, ADD COLUMN spend_in numeric,"
        " ADD COLUMN spend_out numeric, ADD COLUMN spend_cached numeric,"
        " ADD COLUMN spend_cost double precision, ADD COLUMN spend_est boolean, ADD COLUMN spend_multi text",
    ],
}


def _fill_rows(conn: Any) -> None:
    from aq_core.store_pg.rows import fill

    fill(conn)


def _fill_derived(conn: Any) -> None:
    from aq_core.store_pg.rows import fill_derived

    fill_derived(conn)


#: Work a migration does in Python after its statements, in the same transaction.
AFTER: dict[int, Any] = {4: _fill_rows, 5: _fill_derived}


def schema_version(conn: Any) -> int | None:
    """The schema version in the database (None: no aq schema there)."""
    try:
        row = conn.execute("SELECT max(version) FROM aq_schema_version").fetchone()
    except psycopg.errors.UndefinedTable:
        return None
    return None if row is None or row[0] is None else int(row[0])


def check_schema(connection: Connection) -> None:
    """Refuse a database without aq's schema, or with a version other than this aq's (one line each)."""
    where = connection.public
    version = connection.do(lambda conn, _: schema_version(conn))
    if version is None:
        raise AqError(f"store: {where} has no aq schema yet: run `aq store init --store URL` once")
    if version > SCHEMA_VERSION:
        raise AqError(
            f"store: {where} has schema version {version}, newer than this aq knows"
            f" ({SCHEMA_VERSION}): upgrade aq on this host"
        )
    if version < SCHEMA_VERSION:
        raise AqError(
            f"store: {where} has schema version {version}, older than this aq ({SCHEMA_VERSION}):"
            " run `aq store init --store URL` to migrate it"
        )


def init_schema(url: str) -> tuple[int, int]:
    """Create or migrate the schema; return (version before, version now). Idempotent."""
    from aq_core import __version__

    connection = Connection(url)
    connection.open()
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
                        f"store: {connection.public} has schema version {before}, newer than this aq knows"
                        f" ({SCHEMA_VERSION}): upgrade aq on this host"
                    )
                for version in range(before + 1, SCHEMA_VERSION + 1):
                    for statement in MIGRATIONS[version]:
                        conn.execute(statement)
                    if version in AFTER:
                        AFTER[version](conn)
                    conn.execute(
                        "INSERT INTO aq_schema_version (version, by_aq) VALUES (%s, %s)", (version, __version__)
                    )
                return before, SCHEMA_VERSION

        before, now = connection.do(op)
        if 0 < before < now:  # rows were rewritten (kept rows computed): see ``rows.settle``
            from aq_core.store_pg.rows import settle

            connection.do(lambda conn, _: settle(conn))
        return before, now
    finally:
        connection.close()

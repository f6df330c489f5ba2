"""The PostgreSQL store: one queue shared by runners on many hosts (SPEC §12), through psycopg 3.

The package's modules, each with one job:

- ``connection``: the URL (aq's ``lease=``), connecting, reconnecting and retrying a statement;
- ``schema``: the tables, versioned migrations (``aq store init``) and the version check;
- ``leases``: ``store.coord``: locks and claims as lease rows renewed by a heartbeat, liveness,
  change tokens;
- ``lockrows``: the statements that take and release lock rows, and whether a holder is alive;
- ``runners``: every host's live runners (``aq_runners``), and ``aq stop``'s request to each;
- ``store``: ``PgStore``: job state and meta, read ahead for many jobs in one query;
- ``readahead``: the store's reads ahead, each thread's own (many jobs a query, a job with its lock,
  the waiting jobs with the engines' records, an engine's records with a job's meta);
- ``metalines``: the statements that append meta lines, once each, and return them with a move;
- ``claims``: the claim's statements (the runner's with its first meta lines), prepared once a
  connection and run through libpq;
- ``engines``: the engine records (``store.engines``);
- ``migrate``: ``aq store migrate``, a filesystem queue copied in one transaction;
- ``rows``: finished jobs' status rows kept on the server, with their table cells and typed figures;
- ``reads``: ``aq status`` and ``aq insights`` printed from those rows for a host with no rows cache.

This host's own files (logs, tmp, its runners, ``config.yaml``) stay in its local directory
(``store.files``), as with the filesystem store.
"""

from aq_core.store_pg.connection import DEFAULT_LEASE, MIN_LEASE, parse_url, public_url
from aq_core.store_pg.migrate import live_runners, migrate_fs
from aq_core.store_pg.schema import SCHEMA_VERSION, init_schema, schema_version
from aq_core.store_pg.store import PgStore

__all__ = [
    "DEFAULT_LEASE",
    "MIN_LEASE",
    "SCHEMA_VERSION",
    "PgStore",
    "init_schema",
    "live_runners",
    "migrate_fs",
    "parse_url",
    "public_url",
    "schema_version",
]

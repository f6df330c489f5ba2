"""The PostgreSQL store's engine records (``store.engines``), and meta rows from ``key=value`` items.

Engine records are insert-only rows of ``aq_engine_meta``, in order; the last value of a key wins.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Mapping
from typing import Any

from aq_core.errors import AqError
from aq_core.meta import Meta, encode_lines, parse_lines
from aq_core.store import EngineRecords
from aq_core.store_pg.connection import Connection, Prepared
from aq_core.store_pg.readahead import StoreAhead

# Read at an attempt's end (one engine's records): through libpq (``Connection.rows``).
_ONE = Prepared("aq_engine", "SELECT key, value FROM aq_engine_meta WHERE engine = $1 ORDER BY seq")

_INSERT_ENGINE_META = """
INSERT INTO aq_engine_meta (engine, key, value, batch)
SELECT %s, t.k, t.v, %s FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS t(k, v, n) ORDER BY t.n
"""


def pairs(items: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (key, value) pairs ``items`` makes, exactly as a meta file would read them back."""
    # A NUL cannot be stored in a text column; a meta value never needs one.
    return [(k, v.replace("\x00", "\ufffd")) for k, v in parse_lines(encode_lines(items))]


def append_rows(
    conn: Connection, statement: str, table: str, column: str, owner: str, items: Mapping[str, Any]
) -> None:
    """Insert ``items`` as meta rows of ``owner``, once even when the statement is retried."""
    rows = pairs(items)
    if not rows:
        return
    batch = secrets.token_hex(8)
    keys, values = [k for k, _ in rows], [v for _, v in rows]

    def op(db: Any, retrying: bool) -> None:
        if (
            retrying
            and db.execute(
                f"SELECT 1 FROM {table} WHERE {column} = %s AND batch = %s LIMIT 1", (owner, batch)
            ).fetchone()
        ):
            return
        db.execute(statement, (owner, batch, keys, values))

    conn.do(op)


class PgEngineRecords(EngineRecords):
    """Engine records as insert-only rows of ``aq_engine_meta``; what the store read ahead of them
    (``StoreAhead``: with the waiting jobs' listing, or with a job's meta) answers first."""

    def __init__(self, conn: Connection, ahead: StoreAhead) -> None:
        self.conn, self.ahead = conn, ahead

    def prefetched(self) -> contextlib.AbstractContextManager[None]:
        """Within the block, this thread's ``names`` and ``read`` are served from one query made on
        entry (each answer is what the same call would have returned then; an append is seen)."""
        return self.ahead.engines_listed()

    def append(self, engine: str, items: Mapping[str, Any]) -> None:
        if not engine:
            raise AqError(f"bad engine name {engine!r}")
        self.ahead.engines_written()  # read again from the database: this thread sees its own write
        append_rows(self.conn, _INSERT_ENGINE_META, "aq_engine_meta", "engine", engine, items)

    def read(self, engine: str) -> Meta:
        rows = self.ahead.engine_rows(engine)
        if rows is None:
            rows = self.conn.do(lambda conn, _: self.conn.rows(conn, _ONE, [engine]))
        return Meta(rows)

    def names(self) -> list[str]:
        names = self.ahead.engine_names()
        if names is not None:
            return names
        rows = self.conn.do(
            lambda conn, _: conn.execute("SELECT DISTINCT engine FROM aq_engine_meta ORDER BY engine").fetchall()
        )
        return [name for (name,) in rows]

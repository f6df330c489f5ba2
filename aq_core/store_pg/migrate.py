"""``aq store migrate``: copy a filesystem queue into PostgreSQL, in one transaction."""

from __future__ import annotations

import secrets
from typing import Any

from aq_core.errors import AqError
from aq_core.meta import Meta
from aq_core.store import STATES, local_runners
from aq_core.store_fs import FsStore
from aq_core.store_pg.schema import PLAN_FROM_META, init_schema
from aq_core.store_pg.store import BUMP_INBOX, PgStore


def live_runners(source: FsStore) -> list[Meta]:
    """The runners registered in a filesystem queue that are still running."""
    from aq_core.procs import alive

    return [info for info in local_runners(source.root) if alive(info.integer("pid"), info.number("pidstart"))]


def _refuse_live(source: FsStore) -> None:
    live = live_runners(source)
    if live:
        pids = ", ".join(str(info.integer("pid")) for info in live)
        raise AqError(
            f"store migrate: a runner is running on {source.root} (pid {pids}): stop it first (aq --root"
            f" {source.root} stop), then migrate"
        )


def migrate_fs(source: FsStore, url: str) -> dict[str, int]:
    """Copy every job (state, bytes, queued time), every meta line in order and the engine records of
    a filesystem queue into PostgreSQL, in one transaction; return the counts. The source is not
    changed here (the caller marks it migrated)."""
    _refuse_live(source)
    init_schema(url)
    entries = source.list()
    meta_ids = sorted(p.name[: -len(".meta")] for p in (source.root / "meta").glob("*.meta"))
    job_ids = [e.id for e in entries]
    engines = source.engines.names()
    counts = {state.value: 0 for state in STATES}
    store = PgStore(url, local=None)
    try:

        def op(conn: Any, _: bool) -> dict[str, int]:
            lines = engine_lines = 0
            with conn.transaction():
                taken = conn.execute(
                    "SELECT id FROM aq_jobs WHERE id = ANY(%(ids)s::text[])"
                    " UNION SELECT DISTINCT job_id FROM aq_meta WHERE job_id = ANY(%(meta)s::text[])"
                    " UNION SELECT DISTINCT engine FROM aq_engine_meta WHERE engine = ANY(%(engines)s::text[])"
                    " LIMIT 3",
                    {"ids": job_ids, "meta": meta_ids, "engines": engines},
                ).fetchall()
                if taken:
                    names = ", ".join(repr(t) for (t,) in taken)
                    raise AqError(f"store migrate: {store.describe()} already has {names}: nothing was copied")
                seen: set[str] = set()
                with conn.cursor().copy("COPY aq_jobs (id, state, data, queued, op_token) FROM STDIN") as copy:
                    for entry in entries:
                        if entry.id in seen:
                            raise AqError(f"store migrate: job {entry.id!r} is in two state folders; fix that first")
                        seen.add(entry.id)
                        copy.write_row(
                            (
                                entry.id,
                                entry.state.value,
                                source.read_job(entry.id, entry.state),
                                entry.queued,
                                secrets.token_hex(8),
                            )
                        )
                        counts[entry.state.value] += 1
                with conn.cursor().copy("COPY aq_meta (job_id, key, value) FROM STDIN") as copy:
                    for job_id in meta_ids:
                        for key, value in source.read_meta(job_id).pairs:
                            copy.write_row((job_id, key, value.replace("\x00", "\ufffd")))
                            lines += 1
                with conn.cursor().copy("COPY aq_engine_meta (engine, key, value) FROM STDIN") as copy:
                    for engine in engines:
                        for key, value in source.engines.read(engine).pairs:
                            copy.write_row((engine, key, value.replace("\x00", "\ufffd")))
                            engine_lines += 1
                conn.execute(PLAN_FROM_META, (job_ids,))
                conn.execute(BUMP_INBOX)
                # Check what arrived before committing it, and that no runner started meanwhile.
                got_jobs = conn.execute(
                    "SELECT count(*) FROM aq_jobs WHERE id = ANY(%s::text[])", (job_ids,)
                ).fetchone()[0]
                got_lines = conn.execute(
                    "SELECT count(*) FROM aq_meta WHERE job_id = ANY(%s::text[])", (meta_ids,)
                ).fetchone()[0]
                if (got_jobs, got_lines) != (len(job_ids), lines):
                    raise AqError(
                        f"store migrate: copied {got_jobs} of {len(job_ids)} jobs and {got_lines} of {lines}"
                        " meta lines: nothing was committed"
                    )
                _refuse_live(source)
            return {
                **counts,
                "jobs": len(job_ids),
                "meta_lines": lines,
                "engines": len(engines),
                "engine_lines": engine_lines,
            }

        return store.conn.do(op, retry_for=0)
    finally:
        store.close()

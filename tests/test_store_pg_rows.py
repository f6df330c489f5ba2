"""Finished jobs' status rows kept on the PostgreSQL server (schema version 4): a host's first read
fetches them instead of computing each from meta, and `aq status` / `aq insights` print exactly what
they print on the filesystem store for the same jobs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import aq, write_job
from pgserver import NewDb, PgServer, dbname
from test_store_pg import aqpg

from aq_core.meta import Meta
from aq_core.store import State

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import queue_data  # noqa: E402

pytestmark = pytest.mark.requires("postgresql")
READS = (["status", "--json"], ["status"], ["insights", "--json"], ["insights"], ["insights", "--engine", "codex"])


def _reads(root: Path, url: str | None = None, host: str = "h") -> dict[str, str]:
    out = {}
    for args in READS:
        result = aq(*args, root=root) if url is None else aqpg(url, *args, host=host, root=root)
        assert result.returncode == 0, result.stderr
        out[" ".join(args)] = result.stdout
    return out


def _drop_meta(pg_server: PgServer, url: str) -> None:
    """Take every meta line away (the insert-only trigger set aside): a read that still works read none."""
    db = dbname(url)
    pg_server.sql("ALTER TABLE aq_meta DISABLE TRIGGER aq_meta_insert_only", dbname=db)
    pg_server.sql("DELETE FROM aq_meta", dbname=db)
    pg_server.sql("ALTER TABLE aq_meta ENABLE TRIGGER aq_meta_insert_only", dbname=db)


def test_reads_on_postgresql_equal_the_filesystem_store_and_a_new_host_reads_no_meta(
    new_db: NewDb,
    tmp_path: Path,
    pg_server: PgServer,
) -> None:
    root = tmp_path / "fsq"
    queue_data.add_finished_jobs(root, 0, 300)
    expected = _reads(root)
    url = new_db()
    migrated = aq("store", "migrate", "--from", str(root), "--to", url, root=tmp_path / "migrating-host")
    assert migrated.returncode == 0, migrated.stderr
    db = dbname(url)
    kept = pg_server.sql("SELECT count(*) FROM aq_jobs WHERE row_token = op_token AND row_json IS NOT NULL", dbname=db)
    assert kept == [(300,)], "aq store migrate keeps every finished job's row on the server"
    assert _reads(tmp_path / "migrating-host", url) == expected
    _drop_meta(pg_server, url)
    # A host that never read this store: every row comes from the server, not from meta.
    assert _reads(tmp_path / "new-host", url, host="new-host") == expected


def test_the_runner_keeps_each_finished_row_and_a_moved_job_is_never_shown_from_a_stale_one(
    new_db: NewDb,
    tmp_path: Path,
    pg_server: PgServer,
) -> None:
    url, work = new_db(), tmp_path / "work"
    work.mkdir()
    jobs = {"good": "echo fine", "bad": "exit 3", "also": "true"}
    paths = [
        str(write_job(tmp_path / "jobs", name, {"engine": "command", "cwd": str(work), "command": command}))
        for name, command in jobs.items()
    ]
    assert aqpg(url, "add", *paths, host="a", root=tmp_path / "a").returncode == 0
    ran = aqpg(url, "run", "--once", host="a", root=tmp_path / "a")
    assert ran.returncode == 0, ran.stderr
    db = dbname(url)
    kept = pg_server.sql(
        "SELECT id, state, row_json FROM aq_jobs WHERE row_token = op_token AND row_layout = 'table-2'"
        " AND row_cells IS NOT NULL ORDER BY id",
        dbname=db,
    )
    assert [(i, s) for i, s, _ in kept] == [("also", "done"), ("bad", "failed"), ("good", "done")]
    assert {i: json.loads(t)["result"] for i, _, t in kept} == {"also": "ok", "bad": "crash", "good": "ok"}
    # The host has no rows cache to fold a journal into (it prints from the server): none grows there.
    assert not list((tmp_path / "a").glob("cache/*.journal"))
    here = aqpg(url, "status", "--json", host="a", root=tmp_path / "a").stdout
    assert aqpg(url, "status", "--json", host="b", root=tmp_path / "b").stdout == here

    # A retried job moves: its kept row is stale from then on, and no host shows it.
    assert aqpg(url, "retry", "bad", host="b", root=tmp_path / "b").returncode == 0
    rows = json.loads(aqpg(url, "status", "--json", host="c", root=tmp_path / "c").stdout)["jobs"]
    assert {r["id"]: r["state"] for r in rows} == {"bad": "inbox", "good": "done", "also": "done"}
    assert json.loads(aqpg(url, "status", "--json", host="a", root=tmp_path / "a").stdout)["jobs"] == rows


def test_store_init_migrates_version_3_and_keeps_the_rows_of_finished_jobs(
    new_db: NewDb,
    tmp_path: Path,
    pg_server: PgServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aq_core.records import SUMMARY
    from aq_core.status import job_row
    from aq_core.store_fs import FsStore
    from aq_core.store_pg.schema import MIGRATIONS, SCHEMA_VERSION

    assert SCHEMA_VERSION == 5
    root = tmp_path / "fsq"
    queue_data.add_finished_jobs(root, 0, 40)
    expected = _reads(root)
    url = new_db(init=False)
    db = dbname(url)
    import psycopg

    # A version 3 database, as the previous aq made it, holding the same finished jobs.
    fs = FsStore(root, create=False)
    with psycopg.connect(pg_server.url(db), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE aq_schema_version (version integer PRIMARY KEY, applied timestamptz NOT NULL"
            " DEFAULT now(), by_aq text)"
        )
        for version in (1, 2, 3):
            for statement in MIGRATIONS[version]:
                conn.execute(statement.encode())  # bytes: no parameters, a '%' is a '%'
            conn.execute("INSERT INTO aq_schema_version (version) VALUES (%s)", (version,))
        for entry in fs.list():
            conn.execute(
                "INSERT INTO aq_jobs (id, state, data, queued, op_token) VALUES (%s, %s, %s, %s, %s)",
                (entry.id, entry.state.value, fs.read_job(entry.id, entry.state), entry.queued, "t-" + entry.id),
            )
            for key, value in fs.read_meta(entry.id).pairs:
                conn.execute("INSERT INTO aq_meta (job_id, key, value) VALUES (%s, %s, %s)", (entry.id, key, value))
    stale = aqpg(url, "status", host="h", root=tmp_path / "r")
    assert stale.returncode == 1 and "older than this aq" in stale.stderr
    from aq_core.store_pg import init_schema, rows

    monkeypatch.setattr(rows, "FILL_BATCH", 7)  # several batches of meta
    assert init_schema(url) == (3, 5)
    assert "schema is up to date (version 5)" in aqpg(url, "store", "init", host="h", root=tmp_path / "r").stdout
    kept = pg_server.sql("SELECT id, state, row_token, row_json, row_summary FROM aq_jobs", dbname=db)
    assert len(kept) == 40
    for job_id, state, token, text, summary in kept:
        row = job_row(job_id, State(state), Meta(fs.read_meta(job_id).pairs))
        assert token == "t-" + job_id and json.loads(text) == row
        assert json.loads(summary) == [row.get(k) for k in SUMMARY]
    _drop_meta(pg_server, url)
    assert _reads(tmp_path / "new-host", url, host="new-host") == expected


def test_store_init_again_is_a_no_op(new_db: NewDb, tmp_path: Path) -> None:
    url = new_db()
    again = subprocess.run(
        [sys.executable, "-m", "aq_core", "store", "init", "--store", url], capture_output=True, text=True
    )
    assert again.returncode == 0 and "schema is up to date (version 5)" in again.stdout, again.stderr

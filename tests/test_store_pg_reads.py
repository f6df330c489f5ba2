"""A host with no rows cache prints `aq status` and `aq insights` from the rows the PostgreSQL server
keeps (schema version 5): the server sorts and sums, the host builds no cache, and every output is
byte for byte the filesystem store's for the same jobs, odd jobs included."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from pgserver import NewDb, PgServer, dbname
from test_store_pg import aqpg
from test_store_pg_rows import _drop_meta, _reads

from aq_core.records import FORMAT

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import queue_data  # noqa: E402

pytestmark = pytest.mark.requires("postgresql")
JOB = "---\nengine: {engine}\n---\nDo the thing.\n"


def _attempt(n: int, engine: str, t: float, cost: str, result: str, extra: str = "") -> str:
    return (
        f"claimed={t}\nattempt={n}\nattempts={n}\nengine={engine}\nstarted={t + 1}\nexit=0\nduration_s={n * 1.1}\n"
        f"tokens_in={n * 1000}\ntokens_out={n * 10}\ncost_usd={cost}\n{extra}finished={t + 2}\nresult={result}\n"
    )


def _odd_jobs(root: Path) -> None:
    """Jobs the server's sums and order must treat exactly as Python does."""
    t = queue_data.T0 + 10_000_000
    jobs = {
        # attempts on two engines (a fallback): spend on each, estimated cost on one
        "fell-back": (
            "done",
            "claude",
            _attempt(1, "claude", t, "0.1", "limit") + _attempt(2, "codex", t, "0.2", "ok"),
        ),
        "estimated": (
            "done",
            "codex",
            _attempt(1, "codex", t + 5, "0.30000000000000004", "ok", "estimated=cost_usd\n"),
        ),
        # the same finish time: newest first falls back to the id, in code point order
        "Same-B": ("done", "devin", _attempt(1, "devin", t + 9, "1e-05", "ok")),
        "same-a": ("failed", "devin", _attempt(1, "devin", t + 9, "0.7", "crash")),
        "no-engine": ("failed", "", "result=invalid\nerror=no engine: set one\n"),
        "no-finish": ("done", "claude", "attempts=1\nresult=ok\n"),
        # a unit separator inside a value: its table cells cannot be kept split on the server
        "odd-error": ("failed", "claude", _attempt(1, "claude", t + 20, "2.5", "crash", "error=bad\x1fthing\n")),
    }
    for job_id, (state, engine, meta) in jobs.items():
        (root / state / f"{job_id}.md").write_text(JOB.format(engine=engine or "nope"))
        head = f"added={t - 100}\n" + (f"engine={engine}\n" if engine else "")
        (root / "meta" / f"{job_id}.meta").write_text(head + meta)


def _no_cache(root: Path) -> bool:
    return not list((root / "cache").glob(f"records-{FORMAT}-*")) if (root / "cache").exists() else True


def _migrated(tmp_path: Path, url: str) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "fsq"
    queue_data.add_finished_jobs(root, 0, 120)
    _odd_jobs(root)
    expected = _reads(root)
    migrated = aq_migrate(root, url, tmp_path / "migrating-host")
    assert migrated.returncode == 0, migrated.stderr
    return root, expected


def aq_migrate(root: Path, url: str, host_root: Path):
    from helpers import aq

    return aq("store", "migrate", "--from", str(root), "--to", url, root=host_root)


def test_a_new_host_prints_the_filesystem_stores_bytes_from_the_server_and_builds_no_cache(
    new_db: NewDb,
    tmp_path: Path,
    pg_server: PgServer,
) -> None:
    url = new_db()
    _, expected = _migrated(tmp_path, url)
    engines = {e["engine"]: e for e in json.loads(expected["insights --json"])["engines"]}
    assert engines["codex"]["cost_estimated"] and set(engines) >= {"claude", "codex", "devin"}
    _drop_meta(pg_server, url)  # every finished row below comes from the server, none from meta
    fresh = tmp_path / "new-host"
    for args in (["status"], ["status", "--json"], ["insights", "--json"], ["insights"]):
        result = aqpg(url, *args, host="new", root=fresh)
        assert result.returncode == 0, result.stderr
        assert result.stdout == expected[" ".join(args)], args
        assert _no_cache(fresh), "a host with no rows cache builds none"


def test_rows_the_server_lacks_or_holds_stale_are_computed_and_kept_and_the_output_is_the_same(
    new_db: NewDb,
    tmp_path: Path,
    pg_server: PgServer,
) -> None:
    url = new_db()
    _, expected = _migrated(tmp_path, url)
    db = dbname(url)
    stale = "job-000003', 'job-000050', 'fell-back"
    for what in ("row_token = NULL", "row_layout = 'table-0'", "row_layout = NULL"):
        pg_server.sql(f"UPDATE aq_jobs SET {what} WHERE id IN ('{stale}')", dbname=db)
        for n, args in enumerate((["status"], ["status", "--json"], ["insights", "--json"], ["insights"])):
            if n:  # the first read kept them again: make them stale for each read
                pg_server.sql(f"UPDATE aq_jobs SET {what} WHERE id IN ('{stale}')", dbname=db)
            result = aqpg(url, *args, host="new", root=tmp_path / "new-host")
            assert result.stdout == expected[" ".join(args)], (what, args)
            kept = pg_server.sql(
                f"SELECT count(*) FROM aq_jobs WHERE id IN ('{stale}') AND row_token = op_token"
                " AND row_layout = 'table-2'",
                dbname=db,
            )
            assert kept == [(3,)], "the reader kept the rows it computed, for every host's next read"


def test_waiting_jobs_beside_the_servers_rows_print_as_on_a_host_with_a_cache(
    new_db: NewDb,
    tmp_path: Path,
) -> None:
    from helpers import write_job

    url = new_db()
    _migrated(tmp_path, url)
    jobs = tmp_path / "jobs"
    paths = [
        str(write_job(jobs, "later", {"engine": "command", "command": "true", "priority": 3})),
        str(write_job(jobs, "next-one", {"engine": "command", "command": "true", "after": ["job-000001", "later"]})),
    ]
    assert aqpg(url, "add", *paths, host="a", root=tmp_path / "migrating-host").returncode == 0
    for host in ("migrating-host", "new-host"):  # budgets: the lines under the table read every row
        (tmp_path / host).mkdir(exist_ok=True)
        (tmp_path / host / "config.yaml").write_text("budgets:\n  daily_usd: 25\n  claude: 20\n")
    for args in (["status"], ["status", "--json"]):
        cached = aqpg(url, *args, host="a", root=tmp_path / "migrating-host")
        fresh = aqpg(url, *args, host="b", root=tmp_path / "new-host")
        assert cached.returncode == 0 and fresh.returncode == 0, fresh.stderr
        assert fresh.stdout == cached.stdout
    table = aqpg(url, "status", host="b", root=tmp_path / "new-host").stdout
    assert "after later" in table and "of $20.00 spent today" in table
    assert _no_cache(tmp_path / "new-host")


def test_store_init_migrates_version_4_and_fills_what_the_server_prints_from(
    new_db: NewDb,
    tmp_path: Path,
    pg_server: PgServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import psycopg

    from aq_core.store_pg import init_schema, rows
    from aq_core.store_pg.schema import AFTER, MIGRATIONS

    root = tmp_path / "fsq"
    queue_data.add_finished_jobs(root, 0, 30)
    _odd_jobs(root)
    expected = _reads(root)
    url = new_db()
    db = dbname(url)
    assert aq_migrate(root, url, tmp_path / "m").returncode == 0
    # Back to version 4, as the previous aq left it: its columns gone, its version the last.
    with psycopg.connect(pg_server.url(db), autocommit=True) as conn:
        conn.execute("ALTER TABLE aq_jobs " + ", ".join(f"DROP COLUMN {name}" for name in rows.DERIVED))
        conn.execute("DELETE FROM aq_schema_version WHERE version = 5")
    monkeypatch.setattr(rows, "FILL_BATCH", 7)  # several batches
    assert init_schema(url) == (4, 5)
    assert 5 in MIGRATIONS and 5 in AFTER
    filled = pg_server.sql("SELECT count(*) FROM aq_jobs WHERE row_layout = 'table-2'", dbname=db)
    assert filled == [(37,)]
    _drop_meta(pg_server, url)
    fresh = _reads(tmp_path / "new-host", url, host="new-host")
    assert fresh == expected


def test_a_host_with_a_cache_writes_one_view_that_status_and_insights_share(
    new_db: NewDb,
    tmp_path: Path,
) -> None:
    url = new_db()
    _, expected = _migrated(tmp_path, url)
    host = tmp_path / "migrating-host"  # its rows cache was filled by the migration
    first = aqpg(url, "status", host="m", root=host)
    assert first.stdout == expected["status"]
    (view,) = (host / "cache").glob("view-*.bin")
    written = view.stat()
    for args in (["insights", "--json"], ["insights"], ["status", "--json"], ["status"]):
        result = aqpg(url, *args, host="m", root=host)
        assert result.stdout == expected[" ".join(args)], args
        now = view.stat()
        assert (now.st_ino, now.st_mtime_ns) == (written.st_ino, written.st_mtime_ns), f"{args} wrote the view again"

"""PostgreSQL reads with less work a job: a host with a view lists every job as columns (no object per
finished job), and a new host's reads sort one state at a time and sum per pair of engines. Every
output stays byte for byte the filesystem store's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import write_job
from pgserver import NewDb, PgServer
from test_store_pg import aqpg
from test_store_pg_reads import JOB, _attempt, _drop_meta, _migrated, _no_cache, aq_migrate
from test_store_pg_rows import _reads

from aq_core.store import State
from aq_core.views import listing_columns

pytestmark = pytest.mark.requires("postgresql")


def _add(url: str, root: Path, tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    work = tmp_path / "work"  # the jobs' folder: outside any git repository (no checkpoint commits)
    work.mkdir()
    front = {"engine": "command", "command": "true", "cwd": str(work)}
    paths = [
        str(write_job(jobs, "later", {**front, "priority": 3})),
        str(write_job(jobs, "next-one", {**front, "after": ["job-000001", "later"]})),
        str(write_job(jobs, "running", front)),
    ]
    assert aqpg(url, "add", *paths, host="a", root=root).returncode == 0


def test_status_columns_are_the_scans_entries_and_its_finished_listing(new_db: NewDb, tmp_path: Path) -> None:
    from aq_core.store_pg import PgStore

    url = new_db()
    _migrated(tmp_path, url)
    _add(url, tmp_path / "migrating-host", tmp_path)
    store = PgStore(url, local=tmp_path / "local")
    try:
        assert store.claim("running")
        live, columns = store.status_columns()
        entries = store.scan()
        assert sorted(live) == sorted(e for e in entries if e.state in (State.INBOX, State.BUILDING))
        assert {e.state for e in live} == {State.INBOX, State.BUILDING} and len(live) == 3
        assert columns == listing_columns(store.scan_finished()) == store.finished_columns()
        assert len(columns[1]) == 127 and set(columns[0]) == {0, 1}
    finally:
        store.close()


def test_a_host_with_a_view_prints_waiting_running_and_changed_listings_as_a_new_host_does(
    new_db: NewDb,
    tmp_path: Path,
) -> None:
    url = new_db()
    _migrated(tmp_path, url)
    cached_root, fresh_root = tmp_path / "migrating-host", tmp_path / "new-host"
    # The view written for the finished jobs as migrated: the next reads find it matching.
    assert aqpg(url, "status", host="a", root=cached_root).returncode == 0
    (view,) = (cached_root / "cache").glob("view-*.bin")
    written = view.stat().st_mtime_ns
    _add(url, cached_root, tmp_path)
    for args in (["status"], ["status", "--json"]):
        cached = aqpg(url, *args, host="a", root=cached_root)
        fresh = aqpg(url, *args, host="b", root=fresh_root)
        assert cached.returncode == 0 and fresh.returncode == 0, cached.stderr + fresh.stderr
        assert cached.stdout == fresh.stdout, args
    assert view.stat().st_mtime_ns == written, "waiting jobs beside a matching view: the view is used as it is"
    table = aqpg(url, "status", host="a", root=cached_root).stdout
    assert "after later" in table and "running" in table
    # Jobs finish: the listing no longer matches the view; the host patches it and prints the same.
    ran = aqpg(url, "run", "--once", host="a", root=cached_root, timeout=300)
    assert ran.returncode == 0, ran.stderr
    for args in (["status"], ["status", "--json"], ["insights", "--json"]):
        cached = aqpg(url, *args, host="a", root=cached_root)
        fresh = aqpg(url, *args, host="b", root=fresh_root)
        assert cached.stdout == fresh.stdout, args
    assert '"id": "next-one", "state": "done"' in aqpg(url, "status", "--json", host="a", root=cached_root).stdout
    # One more job finishes, and `aq insights --json` is the first read of the changed listing: it
    # patches the view from the listing it read (no second listing), as `aq status` did above.
    front = {"engine": "command", "command": "true", "cwd": str(tmp_path / "work")}
    assert (
        aqpg(url, "add", str(write_job(tmp_path / "jobs", "one-more", front)), host="a", root=cached_root).returncode
        == 0
    )
    assert aqpg(url, "run", "--once", host="a", root=cached_root, timeout=300).returncode == 0
    cached = aqpg(url, "insights", "--json", host="a", root=cached_root)
    fresh = aqpg(url, "insights", "--json", host="b", root=fresh_root)
    assert cached.returncode == 0 and cached.stdout == fresh.stdout
    assert '"id": "one-more", "state": "done"' in cached.stdout
    assert _no_cache(fresh_root)


def test_spend_on_an_engine_other_than_the_jobs_is_summed_on_a_new_host_as_on_the_filesystem(
    new_db: NewDb,
    tmp_path: Path,
    pg_server: PgServer,
) -> None:
    import queue_data

    root = tmp_path / "fsq"
    queue_data.add_finished_jobs(root, 0, 40)
    t = queue_data.T0 + 20_000_000
    # Spent on claude only, finished on codex (no figures there): the job counts under codex, its
    # spend under claude; and jobs with no cost, no tokens, or an engine with spend only.
    jobs = {
        "spent-elsewhere": (
            "done",
            "codex",
            _attempt(1, "claude", t, "0.25", "limit")
            + f"attempt=2\nattempts=2\nengine=codex\nstarted={t + 3}\nexit=0\nfinished={t + 4}\nresult=ok\n",
        ),
        "free": (
            "failed",
            "aider",
            f"attempt=1\nattempts=1\nengine=aider\nstarted={t}\nexit=1\nfinished={t + 1}\nresult=crash\n",
        ),
        "tokens-only": (
            "done",
            "claude",
            f"attempt=1\nattempts=1\nengine=claude\nstarted={t}\ntokens_out=7\nfinished={t + 2}\nresult=ok\n",
        ),
    }
    for job_id, (state, engine, meta) in jobs.items():
        (root / state / f"{job_id}.md").write_text(JOB.format(engine=engine))
        (root / "meta" / f"{job_id}.meta").write_text(f"added={t - 100}\nengine={engine}\n" + meta)
    expected = _reads(root)
    engines = {e["engine"]: e for e in json.loads(expected["insights --json"])["engines"]}
    assert engines["aider"]["jobs"] == 1 and engines["aider"]["cost_usd"] is None
    url = new_db()
    assert aq_migrate(root, url, tmp_path / "m").returncode == 0
    _drop_meta(pg_server, url)  # every row from the server's sums and kept rows
    # READS' first four print from the server (no rows cache on the host until its `--engine` read).
    assert _reads(tmp_path / "new-host", url, host="new") == expected


def test_a_read_whose_listing_missed_the_view_lists_the_jobs_once(new_db: NewDb, tmp_path: Path) -> None:
    from test_store_pg_pick import _sent

    from aq_core import views
    from aq_core.store_pg import PgStore

    url = new_db()
    _migrated(tmp_path, url)
    host = tmp_path / "migrating-host"
    assert aqpg(url, "insights", "--json", host="a", root=host).returncode == 0  # the view, matching
    work = tmp_path / "work"
    work.mkdir()
    job = write_job(tmp_path / "jobs", "one-more", {"engine": "command", "command": "true", "cwd": str(work)})
    assert aqpg(url, "add", str(job), host="a", root=host).returncode == 0
    assert aqpg(url, "run", "--once", host="a", root=host, timeout=300).returncode == 0
    store = PgStore(url, local=host)
    try:
        sent = _sent(store)
        view, finished = views._insights_view(store)
        listings = [s for s in sent if ("FROM aq_jobs" in s and "array_agg(id)" in s) or "op_token FROM aq_jobs" in s]
        assert view is not None and finished is not None  # the listing missed the view: patched from it
        assert "one-more" in [e.id for e in finished]
        assert len(listings) == 1, sent
    finally:
        store.close()

"""The rows cache: rebuildable, journalled by the runner, never stale, never the only record."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import aq, stub, write_job

from aq_core.records import cache_path, journal_path
from aq_core.store_fs import FsStore


def run_jobs(root: Path, tmp_path: Path, n: int, **front) -> None:
    work = tmp_path / "w"
    work.mkdir(exist_ok=True)
    paths = [
        write_job(tmp_path / "jobs", f"r{i}", {"engine": "command", "cwd": str(work), "command": stub(), **front})
        for i in range(n)
    ]
    assert aq("add", *map(str, paths), root=root).returncode == 0
    assert aq("run", "--once", "--workers", "2", root=root).returncode == 0


def test_the_runner_journals_rows_and_a_read_folds_them_in(tmp_path: Path) -> None:
    root = tmp_path / "q"
    run_jobs(root, tmp_path, 5)
    store = FsStore(root)
    assert journal_path(store).exists() and not cache_path(store).exists()
    warm = aq("status", "--json", root=root).stdout
    assert not journal_path(store).exists() and cache_path(store).exists()
    for path in (cache_path(store), journal_path(store)):
        path.unlink(missing_ok=True)
    cold = aq("status", "--json", root=root).stdout
    assert json.loads(warm) == json.loads(cold), "rows from the journal equal rows computed from meta"


def test_a_deleted_cache_folder_is_made_again_by_the_next_finished_job(tmp_path: Path) -> None:
    root = tmp_path / "q"
    run_jobs(root, tmp_path, 1)
    store = FsStore(root)
    for path in journal_path(store).parent.iterdir():
        path.unlink()
    journal_path(store).parent.rmdir()
    work = tmp_path / "w"
    later = write_job(tmp_path / "more", "r1", {"engine": "command", "cwd": str(work), "command": stub()})
    assert aq("add", str(later), root=root).returncode == 0
    assert aq("run", "--once", root=root).returncode == 0
    assert journal_path(store).exists()
    assert oct(journal_path(store).parent.stat().st_mode & 0o777) == "0o700"
    assert '"r1"' in aq("status", "--json", root=root).stdout


def test_a_torn_journal_costs_only_a_recomputation(tmp_path: Path) -> None:
    root = tmp_path / "q"
    run_jobs(root, tmp_path, 3)
    store = FsStore(root)
    journal = journal_path(store)
    journal.write_bytes(journal.read_bytes()[:-7])  # the last write cut short
    rows = json.loads(aq("status", "--json", root=root).stdout)["jobs"]
    assert sorted((r["id"], r["state"], r["result"]) for r in rows) == [(f"r{i}", "done", "ok") for i in range(3)]


def test_a_retried_job_is_never_shown_from_a_stale_row(tmp_path: Path) -> None:
    root = tmp_path / "q"
    run_jobs(root, tmp_path, 1, verify="test -f ok.txt")
    assert json.loads(aq("status", "--json", root=root).stdout)["jobs"][0]["result"] == "verify_failed"
    (tmp_path / "w" / "ok.txt").write_text("now it passes\n")
    assert aq("retry", "r0", root=root).returncode == 0
    assert json.loads(aq("status", "--json", root=root).stdout)["jobs"][0]["state"] == "inbox"
    assert aq("run", "--once", root=root).returncode == 0
    (job,) = json.loads(aq("status", "--json", root=root).stdout)["jobs"]
    assert (job["state"], job["result"], job["attempts"]) == ("done", "ok", 2)
    text = aq("status", root=root).stdout
    assert "done" in text and "verify_failed" not in text

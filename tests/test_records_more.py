"""The rows cache stays warm across every way a job can finish, and across ``aq store migrate``."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import aq, write_job
from pgserver import NewDb
from test_records import run_jobs

from aq_core import status
from aq_core.records import _parse, journal_path
from aq_core.store import State
from aq_core.store_fs import FsStore


def no_meta_reads(store, monkeypatch) -> list[str]:  # type: ignore[no-untyped-def]
    read: list[str] = []
    original = store.read_meta
    monkeypatch.setattr(store, "read_meta", lambda job_id: read.append(job_id) or original(job_id))
    return read


def test_cancel_and_recovery_journal_the_rows_they_finish(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "q"
    work = tmp_path / "w"
    work.mkdir()
    front = {"engine": "command", "cwd": str(work), "command": "true"}
    paths = [str(write_job(tmp_path / "jobs", job_id, front)) for job_id in ("waiting", "orphan")]
    assert aq("add", *paths, root=root).returncode == 0
    assert aq("status", root=root).returncode == 0  # the cache exists (empty of these jobs)
    store = FsStore(root)
    assert store.claim("orphan")  # its runner died at once: recovery fails it... after its retries
    store.append_meta("orphan", {"claimed": 1.0, "pid": 999999, "orphans": 2})
    assert aq("cancel", "waiting", root=root).returncode == 0
    assert aq("cancel", "orphan", root=root).returncode == 0  # recovered first, then cancelled
    assert {store.locate("waiting"), store.locate("orphan")} == {State.FAILED}
    journalled, _ = _parse(journal_path(store).read_bytes())
    assert set(journalled) == {"waiting", "orphan"}
    read = no_meta_reads(store, monkeypatch)
    rows = status.status_rows(store)
    assert read == [], "finished by cancel and recovery: rows come from the journal, not meta"
    assert {(r["id"], r["result"]) for r in rows} == {("waiting", "cancelled"), ("orphan", "cancelled")}


def test_migrate_leaves_the_new_store_with_a_warm_rows_cache(
    new_db: NewDb,
    tmp_path: Path,
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    from aq_core.store_pg import PgStore

    url = new_db()
    root = tmp_path / "fsq"
    run_jobs(root, tmp_path, 4)
    fs_rows = json.loads(aq("status", "--json", root=root).stdout)["jobs"]  # warm: carried as they are
    (root / "done" / "r0.md").touch()  # one row the source cache holds for an older version: recomputed
    host = tmp_path / "host"
    done = aq("store", "migrate", "--from", str(root), "--to", url, root=host)
    assert done.returncode == 0, done.stderr
    with PgStore(url, local=host) as store:
        read = no_meta_reads(store, monkeypatch)
        rows = status.status_rows(store)
        assert read == [], "the first read on the new store computes no row from meta"
        by_id = {r["id"]: r for r in fs_rows}
        assert {r["id"]: json.loads(r.to_json()) for r in rows} == by_id

"""What the runner does per job with git checkpoints and need not: git started by its full path (found
once per PATH, found again when it goes), and the ``finish`` stage's meta read only when a plugin looks."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from gitutil import git, head, init_repo, note_git_calls
from gitutil import git_calls_since as calls
from helpers import aq, write_job

from aq_core import hookimpl, plugins
from aq_core.checkpoint import CheckpointContext, MetaOnDemand
from aq_core.git_repo import find_repo, git_program
from aq_core.journal import Journal
from aq_core.runner import Runner
from aq_core.store_fs import FsStore


@pytest.fixture(autouse=True)
def _builtin_plugins_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AQ_LOAD_PLUGINS", "")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return init_repo(tmp_path / "repo", files={"a.txt": "a\n"})


def test_git_is_started_by_the_path_a_search_of_path_finds(repo: Path, tmp_path: Path) -> None:
    log, path = note_git_calls(tmp_path, os.environ["PATH"])
    assert git_program(path.encode()) == str(tmp_path / "shim" / "git")  # the first on PATH, as exec finds
    os.environ["PATH"], old = path, os.environ["PATH"]
    try:
        found = find_repo(repo)
        assert found is not None
        assert found.status().clean
        assert calls(log) == ["status"]
        # The git found is removed: the next git is searched for again and found further on PATH.
        (tmp_path / "shim" / "git").unlink()
        assert found.status().clean
        assert calls(log) == []
        assert git_program(path.encode()) != str(tmp_path / "shim" / "git")
        assert found.status().clean
    finally:
        os.environ["PATH"] = old


def test_no_git_on_path_is_reported_as_before(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "no-git"
    empty.mkdir()
    assert git_program(str(empty).encode()) == "git"
    monkeypatch.setenv("PATH", str(empty))
    logs: list[str] = []
    ctx = CheckpointContext("nogit", repo, None, {}, "inplace", ("main",), logs.append)
    assert plugins.checkpoint("prepare", ctx) == {}  # nothing prepared: the job runs without a checkpoint
    assert len(logs) == 1 and logs[0].startswith("wip: prepare: ") and "git" in logs[0]
    monkeypatch.undo()
    assert head(repo) == "refs/heads/main"


def test_a_relative_folder_on_path_is_searched_each_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "git").write_text("#!/bin/sh\nexit 0\n")
    (tmp_path / "bin" / "git").chmod(0o755)
    monkeypatch.chdir(tmp_path)
    assert git_program(b"bin") == "git"  # a relative answer depends on the folder: never kept


def test_meta_on_demand_reads_once_at_the_first_look() -> None:
    reads: list[int] = []

    def read() -> dict[str, str]:
        reads.append(1)
        return {"wip_branch": "aq/wip/j", "attempts": "1"}

    meta = MetaOnDemand(read)
    assert reads == []
    assert meta.get("wip_branch") == "aq/wip/j" and "attempts" in meta and meta.get("nope") is None
    assert dict(meta) == {"wip_branch": "aq/wip/j", "attempts": "1"} and len(meta) == 2
    assert reads == [1]


class Recorder:
    """A checkpoint plugin that answers for one work tree and notes the meta each stage was shown."""

    def __init__(self, mine: Path) -> None:
        self.mine, self.seen = mine, {}

    @hookimpl
    def checkpoint(self, stage: str, ctx: CheckpointContext) -> dict[str, str] | None:
        if ctx.workdir != self.mine:
            return None
        self.seen[stage] = dict(ctx.meta)
        return {"prepare": {"recorder_prepared": "1"}, "commit": {"recorder_commit": "c1"}}.get(stage)


def test_the_finish_stage_sees_the_jobs_meta_so_far(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AQ_LOAD_PLUGINS")
    work = tmp_path / "work"
    work.mkdir()
    root = tmp_path / "root"
    job = write_job(tmp_path / "jobs", "fin", {"engine": "command", "cwd": str(work), "command": ["true"]}, "Go.\n")
    assert aq("add", str(job), root=root).returncode == 0
    store = FsStore(root)
    recorder = Recorder(work)
    pm = plugins.plugin_manager()
    pm.register(recorder, name="recorder")
    try:
        assert Runner(store, workers=1, once=True, journal=Journal(store, out=io.StringIO())).run() == 0
    finally:
        pm.unregister(recorder)
    assert (root / "done" / "fin.md").is_file()
    finish = recorder.seen["finish"]
    # Everything recorded before it: the claim, the prepare stage's answer, the attempt, the commit's answer.
    assert finish["cwd"] == str(work) and finish["recorder_prepared"] == "1" and finish["attempts"] == "1"
    assert finish["recorder_commit"] == "c1" and finish["result"] == "ok"
    assert "recorder_commit" not in recorder.seen["commit"]


def test_an_in_place_job_still_ends_on_its_work_branch(repo: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    job = write_job(tmp_path / "jobs", "idle", {"engine": "command", "cwd": str(repo), "command": ["true"]}, "Go.\n")
    assert aq("add", str(job), root=root).returncode == 0
    store = FsStore(root)
    assert Runner(store, workers=1, once=True, journal=Journal(store, out=io.StringIO())).run() == 0
    meta = dict(store.read_meta("idle").last)
    main = git(repo, "rev-parse", "main")
    assert head(repo) == "refs/heads/aq/wip/idle" and meta["wip_commit"] == main and meta["files_changed"] == "0"

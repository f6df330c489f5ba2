"""What the runner does per job with git checkpoints and need not: git started by its full path, found
once per PATH and found again when it goes; a job in place still ends on its work branch."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from gitutil import git, head, init_repo, note_git_calls
from gitutil import git_calls_since as calls
from helpers import aq, write_job

from aq_core import plugins
from aq_core.checkpoint import CheckpointContext
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


def test_git_is_started_by_the_path_a_search_of_path_finds(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log, path = note_git_calls(tmp_path, os.environ["PATH"])
    assert git_program(path.encode()) == str(tmp_path / "shim" / "git")  # the first on PATH, as exec finds
    monkeypatch.setenv("PATH", path)
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


def test_an_in_place_job_still_ends_on_its_work_branch(repo: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    job = write_job(tmp_path / "jobs", "idle", {"engine": "command", "cwd": str(repo), "command": ["true"]}, "Go.\n")
    assert aq("add", str(job), root=root).returncode == 0
    store = FsStore(root)
    assert Runner(store, workers=1, once=True, journal=Journal(store, out=io.StringIO())).run() == 0
    meta = dict(store.read_meta("idle").last)
    main = git(repo, "rev-parse", "main")
    assert head(repo) == "refs/heads/aq/wip/idle" and meta["wip_commit"] == main and meta["files_changed"] == "0"

"""The git checkpoint's search for a work tree: folders remembered as outside any repository are
looked at again as soon as a repository is created or removed in them or above them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from gitutil import git, init_repo

from aq_core import git_repo, plugins
from aq_core.checkpoint import CheckpointContext
from aq_core.git_repo import find_repo


@pytest.fixture(autouse=True)
def _remember_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remember every folder looked at, however recent its times (the clock is moved on by hand)."""
    monkeypatch.setenv("AQ_LOAD_PLUGINS", "")
    monkeypatch.setattr(git_repo, "_PLAIN", {})
    monkeypatch.setattr(git_repo, "_SETTLED_NS", 0)


def _tick_past(clock: Path, *folders: Path) -> None:
    """Wait (without sleeping) until the filesystem's clock is past these folders' times, so a change
    to them gets a new time: what ``_SETTLED_NS`` guarantees outside tests."""
    newest = max(max(os.stat(f).st_mtime_ns, os.stat(f).st_ctime_ns) for f in folders)
    clock.mkdir(exist_ok=True)
    marker = clock / "tick"
    while True:
        marker.write_text("x")
        if marker.stat().st_ctime_ns > newest:
            return


def _prepare(workdir: Path, job_id: str) -> tuple[dict[str, str], list[str]]:
    logs: list[str] = []
    ctx = CheckpointContext(
        job_id=job_id, workdir=workdir, result=None, meta={}, isolation="inplace", protected=("main",), log=logs.append
    )
    return plugins.checkpoint("prepare", ctx), logs


def test_a_repository_created_then_removed_in_the_cwd_between_jobs(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    _tick_past(tmp_path / "clock", plain, tmp_path)
    assert _prepare(plain, "j1") == ({}, ["wip: cwd not a git repo"])
    assert str(plain) in git_repo._PLAIN  # remembered: the next job's search costs one lstat a level

    _tick_past(tmp_path / "clock", plain)
    git(plain, "init", "-q", "-b", "main")
    git(plain, "commit", "-q", "--allow-empty", "-m", "first")
    out, _ = _prepare(plain, "j2")
    assert out["wip_branch"] == "aq/wip/j2"
    assert git(plain, "symbolic-ref", "HEAD") == "refs/heads/aq/wip/j2"
    assert plugins.work_lock(plain, "inplace") == f"git:{plain}"

    _tick_past(tmp_path / "clock", plain)
    shutil.rmtree(plain / ".git")
    assert _prepare(plain, "j3") == ({}, ["wip: cwd not a git repo"])
    assert plugins.work_lock(plain, "inplace") is None


def test_a_repository_created_then_removed_above_the_cwd(tmp_path: Path) -> None:
    outer = tmp_path / "outer"
    inner = outer / "a" / "b"
    inner.mkdir(parents=True)
    _tick_past(tmp_path / "clock", inner, inner.parent, outer, tmp_path)
    assert find_repo(inner) is None
    assert {str(inner), str(inner.parent), str(outer)} <= set(git_repo._PLAIN)

    _tick_past(tmp_path / "clock", outer)
    git(outer, "init", "-q", "-b", "main")
    repo = find_repo(inner)
    assert repo is not None and repo.top == outer and repo.git_dir == outer / ".git"

    _tick_past(tmp_path / "clock", outer)
    shutil.rmtree(outer / ".git")
    assert find_repo(inner) is None


def test_a_bare_repository_created_between_the_cwd_and_its_work_tree(tmp_path: Path) -> None:
    work = tmp_path / "work"
    inside = work / "bare" / "sub"
    inside.mkdir(parents=True)
    git(work, "init", "-q", "-b", "main")
    _tick_past(tmp_path / "clock", inside, inside.parent)
    repo = find_repo(inside)
    assert repo is not None and repo.top == work
    assert str(inside.parent) in git_repo._PLAIN

    _tick_past(tmp_path / "clock", inside.parent)
    git(inside.parent, "init", "-q", "--bare")
    assert find_repo(inside) is None  # inside a git dir: no work tree, even with one further up


def test_a_symlinked_cwd_is_found_by_its_real_path(tmp_path: Path) -> None:
    repo_dir = tmp_path / "repo"
    (repo_dir / "src").mkdir(parents=True)
    git(repo_dir, "init", "-q", "-b", "main")
    link = tmp_path / "link"
    link.symlink_to(repo_dir / "src")
    repo = find_repo(link)
    assert repo is not None and repo.top == repo_dir
    assert find_repo(tmp_path / "missing") is None
    (tmp_path / "file").write_text("x")
    assert find_repo(tmp_path / "file") is None


def test_a_remembered_folder_costs_one_lstat_a_level(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = tmp_path / "x" / "y"
    plain.mkdir(parents=True)
    _tick_past(tmp_path / "clock", plain, plain.parent, tmp_path)
    assert find_repo(plain) is None
    calls: list[str] = []
    real_lstat, real_stat = os.lstat, os.stat
    monkeypatch.setattr(os, "lstat", lambda p, *a, **k: calls.append(str(p)) or real_lstat(p, *a, **k))
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: calls.append(str(p)) or real_stat(p, *a, **k))
    assert find_repo(plain) is None
    assert len(calls) == len(plain.parts)  # each of its folders once, "/" included: no .git or HEAD asked


def test_git_runs_without_posix_spawn_and_without_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each git is started through ``subprocess`` (the GIL released while it starts, so the runner's
    other threads go on), not ``os.posix_spawnp`` (which holds the GIL until git has exec'd); it reads
    no input, and its output and exit code come back."""

    def refuse(*args: object, **kwargs: object) -> int:
        raise AssertionError("git started through posix_spawn")

    monkeypatch.setattr(os, "posix_spawnp", refuse)
    monkeypatch.setattr(os, "posix_spawn", refuse)
    init_repo(tmp_path / "r", files={"a.txt": "a\n"})
    (tmp_path / "r" / "b.txt").write_text("b\n")
    repo = find_repo(tmp_path / "r")
    assert repo is not None
    assert repo.status().clean is False
    # stdin is /dev/null: git reads no bytes of the runner's own input.
    assert repo.git("hash-object", "--stdin").strip() == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert repo.git("hash-object", "--stdin", stdin="x\n").strip() == "587be6b4c3f93f93c489c0111bba5596147a26cb"
    code, out, err = repo.run("rev-parse", "--verify", "--quiet", "no-such-ref", ok=(0, 1))
    assert (code, out) == (1, "")

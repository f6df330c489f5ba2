"""What a git checkpoint costs and touches: the git processes per job, the user's index left alone,
the cheap paths still exact (packed refs, a change undone, an agent that committed its own work)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from gitutil import commit_all, git, head, init_repo, note_git_calls, status, write
from gitutil import git_calls_since as calls

from aq_core import plugins
from aq_core.checkpoint import CheckpointContext


@pytest.fixture(autouse=True)
def _builtin_plugins_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AQ_LOAD_PLUGINS", "")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return init_repo(tmp_path / "repo", files={"a.txt": "1\n2\n3\n", "b.txt": "b\n", ".gitignore": "*.log\n"})


@pytest.fixture
def git_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put a ``git`` on PATH that notes each command."""
    log, path = note_git_calls(tmp_path, os.environ["PATH"])
    monkeypatch.setenv("PATH", path)
    return log


def run_job(
    repo: Path, job_id: str, agent: Callable[[], None] | None = None, meta: dict[str, str] | None = None
) -> tuple[dict[str, str], list[str]]:
    """Prepare, let ``agent`` work in the tree, commit: the runner's calls. Returns the meta and the log lines."""
    logs: list[str] = []
    meta = dict(meta or {})
    ctx = CheckpointContext(job_id, repo, None, dict(meta), "inplace", ("main",), logs.append)
    meta.update(plugins.checkpoint("prepare", ctx))
    if agent:
        agent()
    ctx = CheckpointContext(job_id, Path(meta["workdir"]), "ok", dict(meta), "inplace", ("main",), logs.append)
    meta.update(plugins.checkpoint("commit", ctx))
    return meta, logs


def known_identity(repo: Path, git_calls: Path) -> None:
    """Run a first job, which asks git once for the identity of the reflog lines (``git var``), and go back to main."""
    run_job(repo, "first")
    assert calls(git_calls) == ["status", "var", "status"]
    git(repo, "switch", "-q", "main")
    calls(git_calls)


def test_a_job_that_changes_nothing_costs_two_git_processes(repo: Path, git_calls: Path) -> None:
    main = git(repo, "rev-parse", "main")
    calls(git_calls)
    known_identity(repo, git_calls)
    meta, logs = run_job(repo, "idle")
    assert calls(git_calls) == ["status", "status"]  # the work branch is made and checked out without git
    assert meta["wip_commit"] == meta["wip_base"] == main and meta["files_changed"] == "0"
    assert head(repo) == "refs/heads/aq/wip/idle" and git(repo, "rev-parse", "aq/wip/idle") == main
    assert logs == [f"wip: nothing new to commit; aq/wip/idle stays at {main[:10]}"]


def test_a_job_that_writes_a_file_costs_seven(repo: Path, git_calls: Path) -> None:
    calls(git_calls)
    known_identity(repo, git_calls)
    meta, _ = run_job(repo, "writer", lambda: write(repo, {"new.txt": "n\n"}))
    assert calls(git_calls) == [
        "status",  # prepare
        *("status", "add", "write-tree", "commit-tree", "update-ref", "diff-tree"),  # commit
    ]
    assert git(repo, "show", "aq/wip/writer:new.txt") == "n"
    assert (meta["files_changed"], meta["lines_added"]) == ("1", "1")
    assert status(repo) == ""  # the snapshot's index became the user's: a clean tree on the branch


def test_prepare_neither_reads_nor_writes_the_users_index(repo: Path) -> None:
    write(repo, {"a.txt": "edited\n", "draft.txt": "mine\n"})
    git(repo, "add", "a.txt")
    index = repo / ".git" / "index"
    before = (index.read_bytes(), index.stat().st_mtime_ns, status(repo))
    lock = repo / ".git" / "index.lock"
    lock.write_text("")  # the user's own git is busy with the index: aq needs no lock on it
    try:
        logs: list[str] = []
        ctx = CheckpointContext("j", repo, None, {}, "inplace", ("main",), logs.append)
        answer = plugins.checkpoint("prepare", ctx)
    finally:
        lock.unlink()
    assert head(repo) == "refs/heads/aq/wip/j" and answer["wip_base"] == git(repo, "rev-parse", "main")
    assert (index.read_bytes(), index.stat().st_mtime_ns, status(repo)) == before
    assert answer["wip_pre"] != git(repo, "rev-parse", "main^{tree}")  # the user's changes: the job's start
    assert git(repo, "rev-parse", "--symbolic-full-name", "@{-1}") == "refs/heads/main"  # `git switch -` goes back


def test_a_packed_work_branch_is_resumed(repo: Path) -> None:
    first, _ = run_job(repo, "p", lambda: write(repo, {"one.txt": "1\n"}))
    git(repo, "switch", "-q", "main")
    git(repo, "pack-refs", "--all")
    assert not (repo / ".git" / "refs" / "heads" / "aq" / "wip" / "p").exists()
    second, logs = run_job(repo, "p", lambda: write(repo, {"two.txt": "2\n"}), meta=first)
    assert any("resuming aq/wip/p" in line for line in logs), logs
    assert git(repo, "rev-parse", f"{second['wip_commit']}^") == first["wip_commit"]
    assert (second["files_changed"], second["lines_added"]) == ("2", "2")


def test_a_change_undone_in_the_work_tree_makes_no_empty_commit(repo: Path) -> None:
    def agent() -> None:
        write(repo, {"a.txt": "staged\n"})
        git(repo, "add", "a.txt")
        write(repo, {"a.txt": "1\n2\n3\n"})  # back to the branch's content: status says changed, twice

    meta, logs = run_job(repo, "undo", agent)
    assert meta["wip_commit"] == git(repo, "rev-parse", "main") == git(repo, "rev-parse", "aq/wip/undo")
    assert meta["files_changed"] == "0"
    assert any("nothing new to commit" in line for line in logs)
    assert status(repo) == ""  # the index is the snapshot's again


def test_an_agent_that_committed_everything_itself_is_counted(repo: Path, git_calls: Path) -> None:
    def agent() -> None:
        write(repo, {"feature.txt": "f\ng\n"})
        commit_all(repo, "the agent's commit")

    meta, logs = run_job(repo, "self", agent)
    assert calls(git_calls)[-2:] == ["status", "diff-tree"]  # nothing to commit; its figures still counted
    assert meta["wip_commit"] == git(repo, "rev-parse", "aq/wip/self")
    assert git(repo, "log", "-1", "--format=%s", meta["wip_commit"]) == "the agent's commit"
    assert (meta["files_changed"], meta["lines_added"]) == ("1", "2")
    assert any("nothing new to commit" in line for line in logs)


def test_changes_inside_a_submodule_are_not_a_commit_of_its_parent(repo: Path, tmp_path: Path) -> None:
    lib = init_repo(tmp_path / "lib", files={"lib.txt": "l\n"})
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "lib")
    base = commit_all(repo, "add the submodule")
    meta, logs = run_job(repo, "sub", lambda: write(repo / "lib", {"lib.txt": "changed inside\n", "new.txt": "n\n"}))
    # A snapshot records the submodule's commit, which did not move: nothing for the parent to commit.
    assert meta["wip_commit"] == base == git(repo, "rev-parse", "aq/wip/sub")
    assert meta["files_changed"] == "0"
    assert any("nothing new to commit" in line for line in logs)

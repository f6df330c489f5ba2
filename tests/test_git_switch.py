"""The work branch made and checked out without git (``git_switch.switch_new``): the same files, reflog
lines and answers from git as ``git switch -c`` gives, and git itself wherever the repository is unusual."""

from __future__ import annotations

import os
import re
import shutil
import stat
import threading
import time
from pathlib import Path

import pytest
from gitutil import commit_all, git, head, init_repo, non_wip_refs, note_git_calls, status, write
from gitutil import git_calls_since as calls

from aq_core import plugins
from aq_core.checkpoint import CheckpointContext
from aq_core.git_repo import find_repo
from aq_core.git_switch import switch_new


@pytest.fixture(autouse=True)
def _builtin_plugins_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AQ_LOAD_PLUGINS", "")


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    """Two copies of one repository, on ``main`` with a commit and an uncommitted and an ignored file."""
    first = init_repo(tmp_path / "a", files={"a.txt": "1\n", "sub/b.txt": "b\n", ".gitignore": "*.log\n"})
    git(first, "switch", "-q", "-c", "feature")  # a reflog line before ours, as a user's repo has
    write(first, {"draft.txt": "mine\n", "x.log": "ignored\n"})
    second = tmp_path / "b"
    shutil.copytree(first, second, symlinks=True)
    return first, second


@pytest.fixture
def git_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put a ``git`` on PATH that notes each command."""
    log, path = note_git_calls(tmp_path, os.environ["PATH"])
    monkeypatch.setenv("PATH", path)
    return log


def prepare(repo: Path, job_id: str) -> tuple[dict[str, str], list[str]]:
    logs: list[str] = []
    ctx = CheckpointContext(job_id, repo, None, {}, "inplace", ("main",), logs.append)
    return plugins.checkpoint("prepare", ctx), logs


def reflog(path: Path) -> str:
    """A reflog file with each line's time replaced (the two switches ran at different seconds)."""
    return re.sub(r"> \d+ ([+-]\d{4})(\t|\n)", r"> T \1\2", path.read_text())  # a line may have no message


def seen(repo: Path, branch: str) -> dict[str, object]:
    """Everything a user could look at after the switch."""
    dot = repo / ".git"
    made = [dot / "HEAD", dot / "refs/heads" / branch, dot / "logs/HEAD", dot / "logs/refs/heads" / branch]
    return {
        "HEAD": (dot / "HEAD").read_text(),
        "ref": (dot / "refs/heads" / branch).read_text(),
        "logs/HEAD": reflog(dot / "logs/HEAD"),
        "branch log": reflog(dot / "logs/refs/heads" / branch),
        "modes": [stat.S_IMODE(p.stat().st_mode) for p in made],
        "abbrev": git(repo, "rev-parse", "--abbrev-ref", "HEAD"),
        "previous": git(repo, "rev-parse", "--symbolic-full-name", "@{-1}"),
        "status": git(repo, "status", "--porcelain=v2", "--branch"),
        "user view": status(repo),
        "branches": git(repo, "branch", "--list"),
        "reflog": git(repo, "reflog", "--format=%H %gs"),
        "branch reflog": git(repo, "reflog", "show", "--format=%H %gs", branch),
        "locks": sorted(str(p.relative_to(dot)) for p in dot.rglob("*.lock")),
        # prepare's snapshot of the user's uncommitted file is a tree no ref names yet: nothing else
        "fsck": [
            line for line in git(repo, "fsck", "--strict", "--no-progress").splitlines() if "dangling" not in line
        ],
    }


@pytest.mark.parametrize("zone", ["UTC0", "IST-5:30", "NST3:30NDT"])
def test_the_switch_leaves_what_git_switch_c_leaves(
    pair: tuple[Path, Path], git_calls: Path, monkeypatch: pytest.MonkeyPatch, zone: str
) -> None:
    monkeypatch.setenv("TZ", zone)  # the offset in each reflog line, e.g. +0530 and -0330
    time.tzset()
    try:
        ours, theirs = pair
        calls(git_calls)
        index_time = (ours / ".git/index").stat().st_mtime_ns
        answer, logs = prepare(ours, "j1")
        assert "switch" not in calls(git_calls)
        git(theirs, "switch", "-q", "--no-track", "-c", "aq/wip/j1")
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert answer["wip_base"] == git(ours, "rev-parse", "feature") and logs == []
    assert (ours / ".git/index").stat().st_mtime_ns == index_time  # the index neither read nor written
    assert seen(ours, "aq/wip/j1") == seen(theirs, "aq/wip/j1")
    line = (ours / ".git/logs/HEAD").read_text().splitlines()[-1]
    assert line.endswith("\tcheckout: moving from feature to aq/wip/j1") and " aq tests <tests@aq.invalid> " in line


def test_without_a_configured_identity_the_reflog_has_the_one_git_guesses(
    pair: tuple[Path, Path], git_calls: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "EMAIL"):
        monkeypatch.delenv(name, raising=False)
    ours, theirs = pair
    calls(git_calls)
    prepare(ours, "anon")
    assert "switch" not in calls(git_calls)
    git(theirs, "-c", "user.useConfigOnly=true", "switch", "-q", "--no-track", "-c", "aq/wip/anon")
    assert seen(ours, "aq/wip/anon") == seen(theirs, "aq/wip/anon")
    assert "aq tests" not in (ours / ".git/logs/HEAD").read_text().splitlines()[-1]


def test_a_job_that_changes_nothing_costs_two_git_processes_once_the_identity_is_known(
    tmp_path: Path, git_calls: Path
) -> None:
    repo = init_repo(tmp_path / "repo", files={"a.txt": "1\n"})
    calls(git_calls)
    for n, expected in ((1, ["status", "var", "status"]), (2, ["status", "status"]), (3, ["status", "status"])):
        logs: list[str] = []
        ctx = CheckpointContext(f"j{n}", repo, None, {}, "inplace", ("main",), logs.append)
        meta = plugins.checkpoint("prepare", ctx)
        ctx = CheckpointContext(f"j{n}", repo, "ok", meta, "inplace", ("main",), logs.append)
        meta.update(plugins.checkpoint("commit", ctx))
        assert calls(git_calls) == expected, n
        assert head(repo) == f"refs/heads/aq/wip/j{n}" and meta["files_changed"] == "0"
        calls(git_calls)  # the test's own git above
    assert git(repo, "rev-parse", "--symbolic-full-name", "@{-1}") == "refs/heads/aq/wip/j2"
    git(repo, "config", "user.name", "Someone Else")
    calls(git_calls)  # the identity is asked again when the config changes
    prepare(repo, "j4")
    assert calls(git_calls) == ["status", "var"]
    assert "Someone Else <tests@aq.invalid>" not in (repo / ".git/logs/HEAD").read_text()  # env wins, as in git


def test_a_linked_worktree_moves_its_own_head_only(tmp_path: Path, git_calls: Path) -> None:
    repo = init_repo(tmp_path / "repo", files={"a.txt": "1\n"})
    linked = tmp_path / "linked"
    git(repo, "worktree", "add", "-q", "-b", "side", str(linked))
    twin = tmp_path / "twin"
    git(repo, "worktree", "add", "-q", "-b", "side2", str(twin))
    calls(git_calls)
    prepare(linked, "w1")
    assert "switch" not in calls(git_calls)
    git(twin, "switch", "-q", "--no-track", "-c", "aq/wip/w2")
    assert head(repo) == "refs/heads/main"
    assert head(linked) == "refs/heads/aq/wip/w1" and head(twin) == "refs/heads/aq/wip/w2"
    assert git(linked, "reflog", "--format=%gs", "-1") == "checkout: moving from side to aq/wip/w1"
    assert git(linked, "reflog", "show", "--format=%gs", "aq/wip/w1") == "branch: Created from HEAD"
    common = repo / ".git"
    assert (common / "refs/heads/aq/wip/w1").is_file() and (common / "logs/refs/heads/aq/wip/w1").is_file()
    assert not (common / "worktrees/linked/refs").exists()  # the branch is the repository's, not the worktree's
    assert reflog(common / "worktrees/linked/logs/HEAD").replace("side", "X").replace("w1", "N") == reflog(
        common / "worktrees/twin/logs/HEAD"
    ).replace("side2", "X").replace("w2", "N")
    assert "aq/wip" not in (common / "logs/HEAD").read_text()  # the main work tree's HEAD log untouched
    git(repo, "fsck", "--strict", "--no-progress")
    assert "aq/wip/w1" in git(repo, "worktree", "list")


def unusual(repo: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    dot = repo / ".git"
    if kind == "detached":
        git(repo, "switch", "-q", "--detach")
    elif kind == "merge message":
        (dot / "MERGE_MSG").write_text("left by a merge\n")
    elif kind == "no reflogs":
        git(repo, "config", "core.logAllRefUpdates", "false")
    elif kind == "shared":
        git(repo, "config", "core.sharedRepository", "group")
    elif kind == "flushed refs":
        git(repo, "config", "core.fsync", "reference")
    elif kind == "sparse":
        git(repo, "config", "core.sparseCheckout", "true")
    elif kind == "recursing into submodules":
        git(repo, "config", "submodule.recurse", "true")
    elif kind == "reftable":
        (dot / "reftable").mkdir()
    elif kind == "config from the environment":
        monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
        monkeypatch.setenv("GIT_CONFIG_KEY_0", "core.logAllRefUpdates")
        monkeypatch.setenv("GIT_CONFIG_VALUE_0", "false")
    elif kind == "included config":
        (repo.parent / "extra.config").write_text("[core]\n\tlogAllRefUpdates = false\n")
        git(repo, "config", "include.path", str(repo.parent / "extra.config"))


UNUSUAL = [
    "detached",
    "merge message",
    "no reflogs",
    "shared",
    "flushed refs",
    "sparse",
    "recursing into submodules",
    "reftable",
    "config from the environment",
    "included config",
]


@pytest.mark.parametrize("kind", UNUSUAL)
def test_git_switches_where_the_repository_is_unusual(
    tmp_path: Path, git_calls: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    repo = init_repo(tmp_path / "repo", files={"a.txt": "1\n"})
    unusual(repo, kind, monkeypatch)
    commit = git(repo, "rev-parse", "HEAD")
    calls(git_calls)
    _, logs = prepare(repo, "u1")
    assert "switch" in calls(git_calls), kind
    assert head(repo) == "refs/heads/aq/wip/u1" and git(repo, "rev-parse", "aq/wip/u1") == commit, logs
    assert not list((repo / ".git").rglob("*.lock"))
    if kind == "merge message":
        assert not (repo / ".git/MERGE_MSG").exists()  # git's switch clears it: the reason git does it
    if kind == "no reflogs":
        assert not (repo / ".git/logs/refs/heads/aq/wip/u1").exists()


def test_a_branch_in_the_way_is_refused_as_git_refuses_it(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo", files={"a.txt": "1\n"})
    git(repo, "branch", "aq/wip/x/below")  # aq/wip/x cannot exist beside it
    git(repo, "pack-refs", "--all")
    found = find_repo(repo)
    assert found is not None
    before = (non_wip_refs(repo), (repo / ".git/HEAD").read_text())
    assert not switch_new(found, "aq/wip/x", git(repo, "rev-parse", "HEAD"))
    assert (non_wip_refs(repo), (repo / ".git/HEAD").read_text()) == before
    assert not (repo / ".git/logs/refs/heads/aq/wip/x").is_file() and not list((repo / ".git").rglob("*.lock"))
    git(repo, "branch", "-D", "aq/wip/x/below")
    git(repo, "branch", "aq")  # a branch named like the folder aq/wip/* lives in
    git(repo, "pack-refs", "--all")
    assert not switch_new(found, "aq/wip/y", git(repo, "rev-parse", "HEAD"))
    assert head(repo) == "refs/heads/main"


def test_a_held_lock_or_a_moved_head_writes_nothing(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo", files={"a.txt": "1\n"})
    found = find_repo(repo)
    assert found is not None
    old = git(repo, "rev-parse", "HEAD")
    (repo / ".git/refs/heads/aq/wip").mkdir(parents=True)
    (repo / ".git/refs/heads/aq/wip/l.lock").write_text("")  # someone's git is creating it
    assert not switch_new(found, "aq/wip/l", old)
    assert not (repo / ".git/refs/heads/aq/wip/l").exists() and head(repo) == "refs/heads/main"
    write(repo, {"a.txt": "2\n"})
    commit_all(repo, "the user committed meanwhile")
    assert not switch_new(found, "aq/wip/m", old)  # HEAD is not at the commit the job started from
    assert git(repo, "branch", "--list", "aq/*") == "" and head(repo) == "refs/heads/main"


def test_worktrees_of_one_repository_switch_at_once(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo", files={"a.txt": "1\n"})
    trees = [tmp_path / f"wt{i}" for i in range(8)]
    for i, path in enumerate(trees):
        git(repo, "worktree", "add", "-q", "-b", f"user{i}", str(path))
    commit = git(repo, "rev-parse", "HEAD")
    # Six worktrees each make their own branch; the last two race for one name: one makes it.
    branches = [f"aq/wip/t{i}" for i in range(6)] + ["aq/wip/same", "aq/wip/same"]
    results: dict[int, bool] = {}
    start = threading.Barrier(len(trees))

    def switch(i: int) -> None:
        found = find_repo(trees[i])
        assert found is not None
        start.wait()
        results[i] = switch_new(found, branches[i], commit)

    threads = [threading.Thread(target=switch, args=(i,)) for i in range(len(trees))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(6)] == [True] * 6 and sorted([results[6], results[7]]) == [False, True]
    assert [head(path) for path in trees[:6]] == [f"refs/heads/{b}" for b in branches[:6]]
    winner, loser = (6, 7) if results[6] else (7, 6)
    assert head(trees[winner]) == "refs/heads/aq/wip/same" and head(trees[loser]) == f"refs/heads/user{loser}"
    assert git(repo, "rev-parse", "aq/wip/same") == commit
    git(repo, "fsck", "--strict", "--no-progress")
    assert not list((repo / ".git").rglob("*.lock"))
    assert len((repo / ".git/logs/refs/heads/aq/wip/same").read_text().splitlines()) == 1


def test_a_lock_left_by_a_killed_aq_is_cleared_once_it_is_old(tmp_path: Path, git_calls: Path) -> None:
    repo = init_repo(tmp_path / "repo", files={"a.txt": "1\n"})
    dot = repo / ".git"
    (dot / "refs/heads/aq/wip").mkdir(parents=True)
    old = time.time() - 60
    left = {
        dot / "HEAD.lock": "ref: refs/heads/aq/wip/killed\n",  # aq was killed between writing and renaming
        dot / "refs/heads/aq/wip/k1.lock": git(repo, "rev-parse", "HEAD") + "\n",
    }
    for lock, text in left.items():
        lock.write_text(text)
        os.utime(lock, (old, old))
    calls(git_calls)
    answer, logs = prepare(repo, "k1")
    assert "switch" not in calls(git_calls) and logs == []
    assert head(repo) == "refs/heads/aq/wip/k1" and not list(dot.rglob("*.lock"))
    git(repo, "fsck", "--strict", "--no-progress")


@pytest.mark.parametrize("what", ["young", "the user's"])
def test_a_lock_that_may_be_live_is_left_alone(tmp_path: Path, what: str) -> None:
    repo = init_repo(tmp_path / "repo", files={"a.txt": "1\n"})
    lock = repo / ".git/HEAD.lock"
    lock.write_text("ref: refs/heads/aq/wip/other\n" if what == "young" else "ref: refs/heads/feature\n")
    if what == "the user's":
        old = time.time() - 60
        os.utime(lock, (old, old))
    _, logs = prepare(repo, "k2")
    assert lock.exists() and head(repo) == "refs/heads/main"  # git refused, as it would have for the user
    assert any("HEAD.lock" in line for line in logs), logs

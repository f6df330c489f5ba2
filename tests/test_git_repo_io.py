"""How the git checkpoint reads git's files and git's output: plain reads and plain pipes give exactly
what a file object and ``subprocess.run`` gave, at any size, and a ``.git`` link is followed as git does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from gitutil import git, init_repo

from aq_core import git_repo
from aq_core.git_repo import GitFailed, find_repo


def test_both_outputs_past_a_pipe_s_size_come_back_whole(tmp_path: Path) -> None:
    """A child that fills stdout and stderr in turns (more than a pipe holds, each) neither blocks
    nor loses a byte, and its exit code is its own."""
    script = (
        "import os\n"
        "for i in range(40):\n"
        "    os.write(1, b'o%d' % i * 3000)\n"
        "    os.write(2, b'e%d' % i * 3000)\n"
        "raise SystemExit(3)\n"
    )
    code, out, err = git_repo._capture([sys.executable, "-c", script], {})
    assert code == 3
    assert out == b"".join(b"o%d" % i * 3000 for i in range(40))
    assert err == b"".join(b"e%d" % i * 3000 for i in range(40))
    assert len(out) > 200_000 and len(err) > 200_000


def test_git_output_and_failures_as_before(tmp_path: Path) -> None:
    big = "".join(f"line {i}\n" for i in range(30_000))  # about 300 KB: several pipe-fulls
    init_repo(tmp_path / "r", files={"big.txt": big})
    repo = find_repo(tmp_path / "r")
    assert repo is not None
    assert repo.git("show", "HEAD:big.txt") == big
    with pytest.raises(GitFailed) as failed:
        repo.git("rev-parse", "--verify", "no-such-ref")
    assert str(failed.value) == "git rev-parse failed: fatal: Needed a single revision"
    with pytest.raises(FileNotFoundError):  # no git at all: an OSError, which the checkpoint reports
        git_repo._capture([str(tmp_path / "no-such-program")], {})


def test_a_branch_at_the_end_of_a_large_packed_refs_is_seen(tmp_path: Path) -> None:
    repo_dir = init_repo(tmp_path / "r", files={"a.txt": "a\n"})
    head = git(repo_dir, "rev-parse", "HEAD")
    names = [f"refs/heads/topic/branch-{i:05d}" for i in range(2500)]
    creates = "".join(f"create {name} {head}\n" for name in names)
    subprocess.run(["git", "update-ref", "--stdin"], cwd=repo_dir, input=creates, text=True, check=True)
    git(repo_dir, "pack-refs", "--all")
    assert (repo_dir / ".git" / "packed-refs").stat().st_size > 65536
    repo = find_repo(repo_dir)
    assert repo is not None
    assert repo.may_have_ref(names[-1]) and repo.may_have_ref(names[0])
    assert not repo.may_have_ref("refs/heads/topic/branch-99999")


def test_a_git_link_is_followed_as_git_follows_it(tmp_path: Path) -> None:
    real = init_repo(tmp_path / "real", files={"a.txt": "a\n"})
    top = tmp_path / "top"
    top.mkdir()
    (top / ".git").symlink_to(real / ".git")  # a link to a git dir: top is a work tree of it
    repo = find_repo(top)
    assert repo is not None and repo.top == top and repo.git_dir == top / ".git"
    assert repo.head_ref() == "refs/heads/main"

    dangling = tmp_path / "outer" / "inner"
    dangling.mkdir(parents=True)
    (dangling / ".git").symlink_to(tmp_path / "nowhere")  # points at nothing: not a work tree here
    git(tmp_path / "outer", "init", "-q", "-b", "main")
    found = find_repo(dangling)
    assert found is not None and found.top == tmp_path / "outer"

"""Helpers for tests that build real git repositories in ``tmp_path`` (identity comes from conftest's env)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def git(cwd: Path, *args: str, check: bool = True) -> str:
    """Run git in ``cwd`` (no signing, no hooks) and return stdout with the trailing newline stripped."""
    proc = subprocess.run(
        ["git", "-c", "commit.gpgSign=false", "-c", "core.hooksPath=/dev/null", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout.rstrip("\n")


def init_repo(path: Path, branch: str = "main", files: dict[str, str | bytes] | None = None) -> Path:
    """Create a repo on ``branch``; with ``files``, write them and make the first commit."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", branch)
    if files:
        write(path, files)
        commit_all(path, "initial")
    return path


def write(root: Path, files: dict[str, str | bytes]) -> None:
    """Write text or bytes files under ``root``, creating directories."""
    for name, content in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)


def commit_all(repo: Path, message: str) -> str:
    """Stage everything and commit; return the new commit id."""
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def refs(repo: Path) -> dict[str, str]:
    """Every ref of the repository and the object it points at."""
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)")
    return dict(line.split(" ", 1) for line in out.splitlines())


def non_wip_refs(repo: Path) -> dict[str, str]:
    """Every ref except aq's work branches (``refs/heads/aq/wip/*``): aq must never change these."""
    return {name: sha for name, sha in refs(repo).items() if not name.startswith("refs/heads/aq/wip/")}


def head(repo: Path) -> str:
    """HEAD's branch (``refs/heads/x``) or, when detached, its commit id."""
    name = git(repo, "symbolic-ref", "-q", "HEAD", check=False)
    return name or git(repo, "rev-parse", "HEAD")


def tree_files(repo: Path, rev: str) -> dict[str, bytes]:
    """The files of ``rev`` and their contents."""
    names = git(repo, "ls-tree", "-r", "-z", "--name-only", rev).split("\0")
    out: dict[str, bytes] = {}
    for name in filter(None, names):
        out[name] = subprocess.run(
            ["git", "cat-file", "blob", f"{rev}:{name}"], cwd=repo, capture_output=True, check=True
        ).stdout
    return out


def status(repo: Path) -> str:
    """``git status --porcelain`` including ignored files: what the user would see."""
    return git(repo, "--no-optional-locks", "status", "--porcelain", "--untracked-files=all", "--ignored")


def note_git_calls(tmp_path: Path, env_path: str) -> tuple[Path, str]:
    """A ``git`` that notes each command (its first word after ``-c``/``-C`` options) in a log, then runs
    the real one. Returns the log and the ``PATH`` to set (the shim's folder first)."""
    shim = tmp_path / "shim"
    shim.mkdir()
    log = tmp_path / "git-calls.log"
    real = next(Path(d) / "git" for d in env_path.split(os.pathsep) if (Path(d) / "git").is_file())
    (shim / "git").write_text(
        "#!/bin/sh\n"
        'first=""; skip=0\n'
        'for a in "$@"; do if [ $skip = 1 ]; then skip=0; elif [ "$a" = -c ] || [ "$a" = -C ]; then skip=1; '
        "else first=$a; break; fi; done\n"
        f'echo "$first" >> {log}\n'
        f'exec {real} "$@"\n'
    )
    (shim / "git").chmod(0o755)
    return log, f"{shim}{os.pathsep}{env_path}"


def git_calls_since(log: Path) -> list[str]:
    """The commands noted since the last call (the log is emptied)."""
    lines = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return lines

"""A git work tree found without running git, and git run in it safely (no hooks, no prompts, no
inherited GIT_DIR): the plumbing the git checkpoint plugin uses. GitPython is imported on first use."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

FALLBACK_IDENTITY = {
    "GIT_AUTHOR_NAME": "aq",
    "GIT_AUTHOR_EMAIL": "aq@localhost",
    "GIT_COMMITTER_NAME": "aq",
    "GIT_COMMITTER_EMAIL": "aq@localhost",
}
# Applied to every git we run: no hooks (commit-tree runs none, but switch and worktree add would run
# post-checkout), no signing prompt, no auto-gc pause, no guessed identity (we fall back to aq's).
GIT_OPTIONS = (
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "commit.gpgSign=false",
    "-c",
    "gc.auto=0",
    "-c",
    "user.useConfigOnly=true",
)
# Inherited variables that would point git at another repository or index than the one we found.
_LOCATING_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR", "GIT_PREFIX", "GIT_NAMESPACE")
# Files in a (per-worktree) git dir that mean an operation is under way: HEAD must not be switched.
_IN_PROGRESS = (
    ("rebase-merge", "a rebase"),
    ("rebase-apply", "a rebase or am"),
    ("MERGE_HEAD", "a merge"),
    ("CHERRY_PICK_HEAD", "a cherry-pick"),
    ("REVERT_HEAD", "a revert"),
    ("BISECT_LOG", "a bisect"),
)


class GitFailed(Exception):
    """A git command failed; the message is one line for the job's log, ``stderr`` all git said."""

    def __init__(self, message: str, stderr: str = "") -> None:
        super().__init__(message)
        self.stderr = stderr


@dataclass(frozen=True)
class Repo:
    """A git work tree: its top level, its own git dir and the repository's common git dir."""

    top: Path
    git_dir: Path
    common_dir: Path

    def run(
        self,
        *args: str,
        stdin: str | None = None,
        env: Mapping[str, str] | None = None,
        ok: Sequence[int] = (0,),
    ) -> tuple[int, str, str]:
        """Run git in the top level; return (exit code, stdout, stderr); raise ``GitFailed`` unless ``ok``.

        Commands run through GitPython's ``Git.execute`` (imported on first use: its import runs git).
        """
        full_env = _git_env()
        if env:
            full_env.update(env)
        istream = subprocess.DEVNULL
        if stdin is not None:
            istream = _stdin_fd(stdin.encode())
        try:
            code, out, err_bytes = _git_cmd(self.top).execute(
                ["git", *GIT_OPTIONS, *args],
                istream=istream,
                env=full_env,
                with_extended_output=True,
                with_exceptions=False,
                stdout_as_string=False,
                strip_newline_in_stdout=False,
            )
        finally:
            if istream is not subprocess.DEVNULL:
                os.close(istream)
        proc = subprocess.CompletedProcess(
            args, code, out, err_bytes if isinstance(err_bytes, bytes) else err_bytes.encode()
        )
        err = proc.stderr.decode(errors="replace").strip()
        if proc.returncode not in ok:
            detail = next((line for line in err.splitlines() if line.startswith(("fatal:", "error:"))), "")
            raise GitFailed(f"git {args[0]} failed: {detail or err or f'exit {proc.returncode}'}", err)
        return proc.returncode, proc.stdout.decode(errors="surrogateescape"), err

    def git(self, *args: str, stdin: str | None = None, env: Mapping[str, str] | None = None) -> str:
        """Run git in the top level; return its stdout, raise ``GitFailed`` if it fails."""
        return self.run(*args, stdin=stdin, env=env)[1]

    def resolve(self, *names: str) -> list[str | None]:
        """Return the object id of each revision expression, ``None`` where it names nothing (one git)."""
        out = self.git("cat-file", "--batch-check=%(objectname)", stdin="".join(f"{n}\n" for n in names))
        return [None if line.endswith((" missing", " ambiguous")) else line for line in out.splitlines()]

    def head_ref(self) -> str | None:
        """Return the ref HEAD points at (``refs/heads/x``, maybe unborn), or ``None`` when detached."""
        if (self.common_dir / "reftable").is_dir():  # the reftable backend keeps no readable HEAD file
            return self.run("symbolic-ref", "-q", "HEAD", ok=(0, 1))[1].strip() or None
        head = (self.git_dir / "HEAD").read_text(errors="replace").strip()
        return head[5:].strip() if head.startswith("ref:") else None

    def in_progress(self) -> str | None:
        """Name the operation under way in this work tree (rebase, merge, ...), or ``None``."""
        for name, what in _IN_PROGRESS:
            if (self.git_dir / name).exists():
                return what
        return None


def _git_cmd(top: Path):
    from git.cmd import Git  # GitPython: imported lazily, its import runs the git binary

    for name in _LOCATING_VARS:
        # Git.execute starts from os.environ; a GIT_DIR inherited by aq would point every git we run
        # (and every agent aq starts) at another repository than the job's.
        os.environ.pop(name, None)
    return Git(str(top))


def _stdin_fd(data: bytes) -> int:
    """Return a readable fd holding ``data`` (a pipe when it fits its buffer, else a temp file)."""
    if len(data) < 32768:
        read, write = os.pipe()
        os.write(write, data)
        os.close(write)
        return read
    import tempfile

    fd, path = tempfile.mkstemp(prefix="aq-git-stdin-")
    os.unlink(path)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _git_env() -> dict[str, str]:
    env = {}
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_PAGER="cat",
        PAGER="cat",
        GIT_EDITOR="true",
        GIT_OPTIONAL_LOCKS="0",  # status must not rewrite the user's index behind their back
        LC_ALL="C",
    )
    return env


def find_repo(workdir: Path) -> Repo | None:
    """Return the git work tree containing ``workdir`` by walking up for ``.git`` (no git process).

    ``None`` when there is none, when ``workdir`` does not exist, or when it lies inside a git dir
    (a bare repository has no work tree to checkpoint).
    """
    start = Path(os.path.realpath(workdir))
    if not start.is_dir():
        return None
    for directory in (start, *start.parents):
        dot_git = directory / ".git"
        if dot_git.is_dir():
            if _is_git_dir(dot_git):
                return Repo(directory, dot_git, _common_dir(dot_git))
        elif dot_git.is_file():  # a linked worktree or submodule: "gitdir: <path>"
            try:
                text = dot_git.read_text(errors="replace").strip()
            except OSError:
                text = ""
            if text.startswith("gitdir:"):
                git_dir = Path(os.path.realpath(directory / text[7:].strip()))
                if (git_dir / "HEAD").is_file():
                    return Repo(directory, git_dir, _common_dir(git_dir))
        if _is_git_dir(directory):
            return None
    return None


def _is_git_dir(path: Path) -> bool:
    return (path / "HEAD").is_file() and (path / "objects").is_dir() and (path / "refs").is_dir()


def _common_dir(git_dir: Path) -> Path:
    try:
        rel = (git_dir / "commondir").read_text().strip()
    except OSError:
        return git_dir
    return Path(os.path.realpath(git_dir / rel))

"""A job's checkpointed work, read-only: its repository and ``git diff`` of ``wip_base..wip_commit``.

Used by ``aq show``, ``aq diff``, ``aq pr`` and the dashboard. It runs the git binary directly
(GitPython is slow to import) and never changes a ref, the index or the working tree.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aq_core.errors import AqError

GIT_TIMEOUT = 30.0
_SHA = re.compile(r"[0-9a-f]{7,64}")


class NoCheckpoint(AqError):
    """The job has no ``wip_commit`` (it never ran in a git repository, or never started)."""


@dataclass(frozen=True)
class Work:
    """Where a job's work is: the repository, its branch and the commit range."""

    job_id: str
    repo: Path
    branch: str | None
    base: str
    commit: str

    @property
    def range(self) -> str:
        return f"{self.base[:10]}..{self.commit[:10]}"


def work_of(job_id: str, last: Mapping[str, str]) -> Work:
    """Return the job's checkpoint from its meta; raise ``NoCheckpoint`` or ``AqError`` (one line)."""
    base, commit = last.get("wip_base") or "", last.get("wip_commit") or ""
    if not commit:
        raise NoCheckpoint(f"job {job_id!r} has no checkpoint (no wip_commit: it has not run in a git repository)")
    if not _SHA.fullmatch(commit) or not _SHA.fullmatch(base):
        raise AqError(f"job {job_id!r}: its meta names no valid commit range ({base!r}..{commit!r})")
    where = last.get("cwd") or last.get("add_dir")
    if not where:
        raise AqError(f"job {job_id!r}: its meta does not say which repository it ran in")
    repo = Path(where)
    if not repo.is_dir():
        raise AqError(f"job {job_id!r}: its repository {where} is not on this machine")
    work = Work(job_id, repo, last.get("wip_branch"), base, commit)
    probe = _git(work.repo, "cat-file", "-e", f"{commit}^{{commit}}", check=False)
    if probe.returncode != 0:
        raise AqError(f"job {job_id!r}: commit {commit[:10]} is not in {where} (was the repository replaced?)")
    return work


def git_env() -> dict[str, str]:
    """The environment for git: never prompt for a password (there may be no terminal)."""
    return dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0", LC_ALL="C")


def _git(repo: Path, *args: str, check: bool = True, timeout: float = GIT_TIMEOUT) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(
            ["git", "--no-pager", "-c", "core.quotepath=off", *args],
            cwd=repo,
            env=git_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
        )
    except FileNotFoundError:
        raise AqError("git is not installed (not found on PATH)") from None
    except subprocess.TimeoutExpired:
        raise AqError(f"git {args[0]} in {repo} took more than {timeout:g}s") from None
    if check and proc.returncode != 0:
        raise AqError(f"git {args[0]} in {repo} failed: {first_line(proc.stderr)}")
    return proc


def first_line(text: str) -> str:
    """The line of git's error output that says what went wrong, without any credentials in URLs."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    pick = next((line for line in lines if line.startswith(("fatal:", "error:", "! ["))), lines[-1] if lines else "")
    return redact(pick)[:300] or "(no message)"


def redact(text: str) -> str:
    """``text`` with ``user:password@`` removed from any URL in it."""
    return re.sub(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]+@", r"\1", text)


def diffstat(work: Work) -> str:
    """``git diff --stat`` of the job's work (renames detected, as its line counts are)."""
    out = _git(work.repo, "diff", "--stat=100", "--no-color", "--no-ext-diff", "-M", work.base, work.commit)
    return out.stdout.rstrip("\n")


def diff_argv(work: Work, stat: bool) -> list[str]:
    """The git command that prints the job's work as a diff, for the user's own terminal."""
    return [
        "git",
        "-c",
        "core.quotepath=off",
        "diff",
        "--no-ext-diff",
        "-M",
        *(["--stat"] if stat else []),
        work.base,
        work.commit,
    ]

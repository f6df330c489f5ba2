"""Helpers for the morning-review tests: a repository with a bare remote, and a stand-in GitHub CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gitutil import git, init_repo

FAKE_GH = Path(__file__).parent / "agents" / "fake_gh.py"


class GitHub:
    """The stand-in ``gh`` (``AQ_GH_BIN``) and what each call of it saw."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.record = folder / "gh-calls.jsonl"
        self.exe = folder / "gh"
        self.exe.write_text(f'#!/bin/sh\nexec {sys.executable} {FAKE_GH} "$@"\n')
        self.exe.chmod(0o755)
        self.env = {"AQ_GH_BIN": str(self.exe), "FAKE_GH_RECORD": str(self.record)}

    def calls(self) -> list[dict]:
        return [json.loads(line) for line in self.record.read_text().splitlines()] if self.record.exists() else []


def repo_with_remote(base: Path) -> tuple[Path, Path]:
    """A repository on ``main`` whose ``origin`` is a local bare repository holding ``main``."""
    remote = base / "remote.git"
    git(base, "init", "-q", "--bare", "-b", "main", str(remote))
    repo = init_repo(base / "repo", files={"README.md": "# project\n", "app.py": "print('hello')\n"})
    git(repo, "remote", "add", "origin", str(remote))
    git(repo, "push", "-q", "origin", "main")
    return repo, remote

"""Helpers for tests that drive the real ``aq`` command line and real git repositories."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

STUB = Path(__file__).parent / "agents" / "stub_agent.py"


def aq(*args: str, root: Path, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120):
    """Run ``python -m aq_core --root ROOT ARGS`` and return the CompletedProcess (text)."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "aq_core", "--root", str(root), *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def aq_popen(*args: str, root: Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.Popen:
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.Popen(
        [sys.executable, "-m", "aq_core", "--root", str(root), *args],
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stub(*args: str) -> list[str]:
    """The argv of the stub agent, for a job's ``command:``."""
    return [sys.executable, str(STUB), *args]


def write_job(folder: Path, job_id: str, front: dict[str, Any], prompt: str = "Do the task.\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{job_id}.md"
    path.write_text("---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n" + prompt)
    return path


def wait_until(condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def state_of(root: Path, job_id: str) -> str | None:
    for state in ("inbox", "building", "done", "failed"):
        if (root / state / f"{job_id}.md").exists():
            return state
    return None


def meta(root: Path, job_id: str) -> dict[str, str]:
    path = root / "meta" / f"{job_id}.meta"
    last: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        last[key] = value
    return last


def meta_pairs(root: Path, job_id: str) -> list[tuple[str, str]]:
    path = root / "meta" / f"{job_id}.meta"
    return [tuple(line.split("=", 1)) for line in path.read_text().splitlines()]  # type: ignore[misc]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def git_repo(path: Path, files: dict[str, str] | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    for name, text in (files or {"README.md": "hello\n"}).items():
        (path / name).write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "-q", "--no-gpg-sign", "-m", "initial")
    return path


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def start_runner(root: Path, log: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``aq run ARGS`` with its output going to ``log`` (a pipe nobody reads would fill and block it)."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "aq_core", "--root", str(root), "run", *args],
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_running(runner: subprocess.Popen, log: Path, condition, timeout: float, what: str) -> None:
    """``wait_until`` that fails at once, with the runner's output, when the runner exits first."""

    def check():
        if runner.poll() is not None:
            _fail(f"the runner exited ({runner.returncode}) before {what}: {log.read_text()[-3000:]}")
        return condition()

    try:
        wait_until(check, timeout, what)
    except AssertionError as exc:  # say what the runner said: a timeout alone explains nothing
        _fail(f"{exc}; the runner's output: {log.read_text(errors='replace')[-3000:]}")


def _fail(message: str) -> None:
    import pytest

    pytest.fail(message)

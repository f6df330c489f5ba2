"""Running one job of a real engine CLI through the real ``aq`` on a real queue and git repository.

Shared by the end-to-end tests of third-party engines (opencode, aider, copilot): each test points its CLI at
the scripted model server with the CLI's own variables and config, then checks what ``aq`` recorded.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
from gitutil import git, init_repo, tree_files
from helpers import aq, aq_popen, meta, state_of, wait_until, write_job

from e2e import clis

PROMPT = "Create hello.txt in the working directory. CANARY-e2e-5b1f\n"


def executable(name: str) -> str:
    """The pinned real CLI, or a skip that says why it cannot be had (no registry, no npm, ...)."""
    try:
        return str(clis.executable(name))
    except clis.Unavailable as err:
        pytest.skip(f"real {name} CLI unavailable: {err}")


def queue(tmp_path: Path, config: str = "") -> Path:
    root = tmp_path / "queue"
    root.mkdir(mode=0o700)
    (root / "config.yaml").write_text(config)
    return root


def repo(tmp_path: Path) -> Path:
    return init_repo(tmp_path / "repo", files={"README.md": "a project\n"})


def add(root: Path, tmp_path: Path, job_id: str, front: dict[str, Any], env: dict[str, str]) -> None:
    done = aq("add", str(write_job(tmp_path / "jobs", job_id, front, PROMPT)), root=root, env=env)
    assert done.returncode == 0, done.stderr


def run_once(root: Path, env: dict[str, str], timeout: float = 300) -> str:
    done = aq("run", "--once", root=root, env=env, timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def run_until_paused(
    root: Path, job_id: str, env: dict[str, str], timeout: float = 240, done: tuple[str, ...] = ()
) -> dict[str, str]:
    """Run the queue until ``job_id`` is back in inbox/ with its engine paused and the ``done`` jobs are done (the
    runner goes on with other engines meanwhile); stop the runner; return the job's meta."""

    def settled() -> str:
        state = state_of(root, job_id)
        if state in ("done", "failed"):  # it ended instead of pausing: nothing brings it back, stop waiting
            return state
        paused = state == "inbox" and "pause_until" in meta(root, job_id)
        return "paused" if paused and all(state_of(root, other) == "done" for other in done) else ""

    runner = aq_popen("run", root=root, env=env)
    try:
        outcome = wait_until(settled, timeout, "the limit")
    finally:
        runner.send_signal(signal.SIGTERM)
        output, _ = runner.communicate(timeout=60)
    print(output)
    assert outcome == "paused", f"{job_id} ended in {outcome}/, not paused: {meta(root, job_id)}\n{output[-3000:]}"
    return meta(root, job_id)


def insights(root: Path, job_id: str) -> dict[str, Any]:
    done = aq("insights", job_id, "--json", root=root)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def engines(root: Path) -> dict[str, dict[str, Any]]:
    status = json.loads(aq("status", "--json", root=root).stdout)
    return {e["engine"]: e for e in status["engines"]}


def wip_files(work: Path, job_id: str) -> dict[str, bytes]:
    """The files of the job's work branch ``aq/wip/<id>``."""
    assert git(work, "rev-parse", "--verify", f"refs/heads/aq/wip/{job_id}", check=False), "no aq/wip branch"
    return tree_files(work, f"aq/wip/{job_id}")


def log_text(root: Path, job_id: str) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted((root / "logs").glob(f"{job_id}.*.log")))

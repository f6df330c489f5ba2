"""``aq explain``'s ``no_runner`` on both stores: said while no runner of the queue runs, not while one
does, and said again at once when that runner is killed on this host. On PostgreSQL a runner of
another host counts too, and stops counting when its row runs out."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from helpers import aq, aq_popen, pid_alive, wait_until, write_job

LEASE = 2.0  # seconds: a killed runner's row on PostgreSQL runs out soon after


@pytest.fixture(params=["filesystem", pytest.param("postgresql", marks=pytest.mark.requires("postgresql"))])
def queue(request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment of a queue's commands: nothing for the filesystem store, else ``AQ_STORE``."""
    if request.param == "filesystem":
        return {}
    return {"AQ_STORE": request.getfixturevalue("new_db")(lease=LEASE)}


def explain(root: Path, env: dict[str, str], host: str = "here") -> dict:
    result = aq("explain", "later", "--json", root=root, env={**env, "AQ_HOST_ID": host})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def says_no_runner(record: dict) -> bool:
    return {"kind": "no_runner"} in record["reasons"]


def test_no_runner_is_said_while_no_runner_of_the_queue_runs(tmp_path: Path, queue: dict[str, str]) -> None:
    root = tmp_path / "q"
    # A job that waits an hour: a runner started now stays idle, and the job stays waiting.
    path = write_job(
        tmp_path,
        "later",
        {"engine": "command", "command": "true", "cwd": str(tmp_path), "not_before": time.time() + 3600},
    )
    added = aq("add", str(path), root=root, env={**queue, "AQ_HOST_ID": "here"})
    assert added.returncode == 0, added.stderr

    before = explain(root, queue)
    assert [r["kind"] for r in before["reasons"]] == ["not_before", "no_runner"]
    assert "No runner is running on this queue" in aq("explain", "later", root=root, env=queue).stdout

    proc = aq_popen("run", root=root, env={**queue, "AQ_HOST_ID": "here"})
    try:
        wait_until(lambda: not says_no_runner(explain(root, queue)), timeout=60, what="the runner to be seen")
        running = explain(root, queue)
        assert [r["kind"] for r in running["reasons"]] == ["not_before"], running
        if queue:  # PostgreSQL: this runner serves the queue for every host
            assert not says_no_runner(explain(tmp_path / "elsewhere", queue, host="elsewhere"))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    assert not pid_alive(proc.pid)

    # On its own host a killed runner is known dead at once (its pid), on both stores.
    assert says_no_runner(explain(root, queue))
    if queue:  # another host knows only the runner's row: dead once it runs out (a lease)
        wait_until(
            lambda: says_no_runner(explain(tmp_path / "elsewhere", queue, host="elsewhere")),
            timeout=60,
            what="the killed runner's row to run out",
        )
    assert explain(root, queue)["state"] == "inbox"

"""``spawn.Agent``'s ``poll`` and ``wait``, as the supervision uses a ``Popen``: one place reaps the
agent, with or without waiting; a status reaped elsewhere reads as 0, as ``Popen`` has it."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from aq_core.spawn import Agent


def _agent(script: str, stdin: int | None = None) -> Agent:
    actions = [(os.POSIX_SPAWN_DUP2, stdin, 0)] if stdin is not None else []
    pid = os.posix_spawn("/bin/sh", ["sh", "-c", script], os.environ, file_actions=actions)
    return Agent(pid, ["sh", "-c", script])


def test_poll_says_none_while_it_runs_and_wait_gives_its_exit_code() -> None:
    read, write = os.pipe()
    try:
        agent = _agent("read line; exit 5", stdin=read)  # runs until a line arrives
        assert agent.poll() is None and agent.returncode is None
        with pytest.raises(subprocess.TimeoutExpired):
            agent.wait(timeout=0.01)
        os.write(write, b"go\n")
        assert agent.wait() == 5
        assert agent.poll() == 5 and agent.returncode == 5
    finally:
        os.close(read)
        os.close(write)


def test_a_wait_with_a_timeout_and_a_poll_see_the_same_end() -> None:
    agent = _agent("exit 3")
    assert agent.wait(timeout=60) == 3
    assert agent.poll() == 3 and agent.wait() == 3


def test_a_signal_reads_as_its_negative_number() -> None:
    read, write = os.pipe()
    try:
        agent = _agent("read line", stdin=read)
        os.kill(agent.pid, signal.SIGKILL)
        assert agent.wait() == -signal.SIGKILL
    finally:
        os.close(read)
        os.close(write)


@pytest.mark.parametrize("reader", ["poll", "wait", "wait_timeout"])
def test_a_status_reaped_elsewhere_reads_as_zero(reader: str) -> None:
    agent = _agent("exit 7")
    os.waitpid(agent.pid, 0)  # someone else reaped it
    if reader == "poll":
        assert agent.poll() == 0
    elif reader == "wait":
        assert agent.wait() == 0
    else:
        assert agent.wait(timeout=60) == 0
    assert agent.returncode == 0

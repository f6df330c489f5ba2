"""An orphan whose lock a process of another host holds: ``aq run --once`` on its own host waits for
the lock, then recovers the job exactly once, rather than leave it in ``building``.

The case the many-host soak's last step found: host A's runner dies with a job; a recovery on host B
takes the job's lock (A's lock row having run out) and dies too. Only A can tell A's runner dead,
and only B can tell B's lock holder dead. Runner processes with distinct ``AQ_HOST_ID`` and queue
roots stand in for hosts, on a real PostgreSQL server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import pid_alive, wait_until
from pgserver import NewDb, PgServer, dbname
from test_store_pg import add_jobs, finish, recording, runner, starts

from aq_core.store import State

pytestmark = pytest.mark.requires("postgresql")

# A process of another host that takes a job's lock, says so, and holds it until it is killed.
_HOLDER = """
import sys, time
from aq_core.store_pg import PgStore
store = PgStore(sys.argv[1], local=sys.argv[2])
lock = store.coord.try_lock("job:" + sys.argv[3])
print("held" if lock is not None else "not held", flush=True)
time.sleep(600)
"""


def _agent(url: str, tmp_path: Path) -> int:
    from aq_core.store_pg import PgStore

    with PgStore(url, local=tmp_path / "peek") as store:
        return int(wait_until(lambda: store.read_meta("j").get("agent_pid"), 15, "the agent pid"))


def _runner_dies(url: str, tmp_path: Path, record: Path) -> int:
    """Host A's runner dies (``kill -9``) in job ``j``'s first attempt; return its agent's pid,
    left running."""
    work = tmp_path / "work"
    work.mkdir()
    command = recording(record, 'if [ "$AQ_ATTEMPT" = 1 ]; then exec sleep 300; fi')
    add_jobs(url, tmp_path / "jobs", {"j": {"engine": "command", "cwd": str(work), "command": command}}, tmp_path)
    first = runner(url, host="host-a", root=tmp_path / "a")
    wait_until(lambda: starts(record), 30, "the first attempt to start")
    agent = _agent(url, tmp_path)  # recorded: recovery ends it
    first.kill()
    first.wait(10)
    return agent


def _orphan_locked_elsewhere(url: str, tmp_path: Path, pg_server: PgServer, record: Path) -> tuple[int, int]:
    """Host A's runner dies in job ``j``'s first attempt; a process of host B takes ``j``'s lock
    and dies. Return the agent's pid and host B's dead holder's."""
    agent = _runner_dies(url, tmp_path, record)
    # The dead runner's lock row runs out with its lease (made to at once here); then a recovery of
    # host B takes the lock and dies holding it.
    pg_server.sql("UPDATE aq_locks SET expires_at = clock_timestamp() WHERE name = 'job:j'", dbname=dbname(url))
    env = {**os.environ, "AQ_HOST_ID": "host-b"}
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, url, str(tmp_path / "b-holder"), "j"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait(10)
    rows = pg_server.sql("SELECT host, pid FROM aq_locks WHERE name = 'job:j'", dbname=dbname(url))
    assert rows == [("host-b", holder.pid)]
    return agent, holder.pid


def _check_recovered_once(url: str, tmp_path: Path, record: Path, agent: int) -> None:
    from aq_core.store_pg import PgStore

    with PgStore(url, local=tmp_path / "check") as store:
        assert store.locate("j") is State.DONE
        meta = store.read_meta("j")
        assert (meta.get("attempts"), meta.get("result")) == ("2", "ok")
        assert sum(1 for key, _ in meta.pairs if key == "recovered") == 1
        assert [value for key, value in meta.pairs if key == "result"] == ["orphaned", "ok"]
    assert [(job, attempt) for job, attempt, _ in starts(record)] == [("j", "1"), ("j", "2")]
    assert not pid_alive(agent), "the dead runner's agent was ended by its host's recovery"


def test_once_on_the_orphans_host_waits_for_another_hosts_recovery_to_let_the_lock_go(
    new_db: NewDb,
    tmp_path: Path,
    pg_server: PgServer,
) -> None:
    url = new_db()  # a 30 s lease: nothing here runs out by itself
    record = tmp_path / "record.txt"
    agent, _ = _orphan_locked_elsewhere(url, tmp_path, pg_server, record)
    # Host A first: its recovery cannot take the lock, so it waits (and says so) rather than exit.
    host_a = runner(url, "--once", host="host-a", root=tmp_path / "a")
    log = tmp_path / "a" / "logs" / "j.aq.log"
    try:
        wait_until(lambda: log.exists() and "its lock is held by host-b pid" in log.read_text(), 60, "A to wait")
        assert host_a.poll() is None, "host A's --once runner waits for the lock"
        # Host B: its recovery takes its dead process's lock, leaves the job to host A (the lease
        # is A's, and A can tell A's runner dead), and lets the lock go; host A then recovers it.
        host_b = runner(url, "--once", host="host-b", root=tmp_path / "b")
        outs = finish([host_b, host_a], 120)
    finally:
        if host_a.poll() is None:
            host_a.kill()
            host_a.wait(10)
    assert [host_b.returncode, host_a.returncode] == [0, 0], outs
    assert "recovered orphan" in outs[1], outs
    _check_recovered_once(url, tmp_path, record, agent)


def test_once_alone_waits_for_a_dead_holders_lock_to_run_out(
    new_db: NewDb,
    tmp_path: Path,
    pg_server: PgServer,
) -> None:
    url = new_db()
    record = tmp_path / "record.txt"
    agent, holder = _orphan_locked_elsewhere(url, tmp_path, pg_server, record)
    # Host B never runs again: its dead process's lock is free only when its lease runs out.
    host_a = runner(url, "--once", host="host-a", root=tmp_path / "a")
    log = tmp_path / "a" / "logs" / "j.aq.log"
    try:
        said = f"its lock is held by host-b pid {holder}: waiting for it"
        wait_until(lambda: log.exists() and said in log.read_text(), 60, "A to wait")
        assert host_a.poll() is None
        pg_server.sql("UPDATE aq_locks SET expires_at = clock_timestamp() WHERE name = 'job:j'", dbname=dbname(url))
        out = finish([host_a], 120)[0]
    finally:
        if host_a.poll() is None:
            host_a.kill()
            host_a.wait(10)
    assert host_a.returncode == 0, out
    assert "recovered orphan" in out
    _check_recovered_once(url, tmp_path, record, agent)


def test_a_dead_runners_job_whose_lock_is_free_is_not_waited_for_twice(
    new_db: NewDb,
    tmp_path: Path,
) -> None:
    """An orphan whose lock is taken on the first pass is recovered at once; nothing is waited for."""
    url = new_db()
    record = tmp_path / "record.txt"
    agent = _runner_dies(url, tmp_path, record)
    again = runner(url, "--once", host="host-a", root=tmp_path / "a")
    out = finish([again], 120)[0]
    assert again.returncode == 0, out
    assert "waiting for it" not in out and "recovered orphan" in out
    _check_recovered_once(url, tmp_path, record, agent)


def test_the_soak_names_the_holders_of_a_job_left_in_building(
    new_db: NewDb,
    tmp_path: Path,
    pg_server: PgServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    from aq_core.store_pg import PgStore

    soak = Path(__file__).resolve().parent.parent / "scripts" / "soak_pg.py"
    spec = importlib.util.spec_from_file_location("soak_pg", soak)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    url = new_db()
    monkeypatch.setenv("AQ_HOST_ID", "host-a")
    with PgStore(url, local=tmp_path / "a") as store:
        store.add("j", b"J", {})
        store.add("k", b"K", {})
        lock = store.coord.try_lock("job:j")
        assert lock is not None and store.claim("j")
        said = module.holders(pg_server, dbname(url), "j")
        assert said == f" (lease: host-a pid {os.getpid()}, live); its lock: host-a pid {os.getpid()}, live"
        assert module.holders(pg_server, dbname(url), "k") == ""  # not in building: nothing to say
        lock.release()

"""Many hosts on the PostgreSQL store: ``aq stop`` reaches every host's runners, an expired lease is left to
its own host while a runner lives there, and a short run of the many-host soak (``scripts/soak_pg.py``).

Runner processes with distinct ``AQ_HOST_ID`` and local directories stand in for hosts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import pid_alive, wait_until
from pgserver import NewDb, PgServer, make_version_1
from test_store_pg import add_jobs, aqpg, finish, recording, runner, starts

from aq_core.store import State
from aq_core.store_pg import SCHEMA_VERSION

needs_postgresql = pytest.mark.requires("postgresql")

SOAK = Path(__file__).resolve().parent.parent / "scripts" / "soak_pg.py"


@needs_postgresql
def test_aq_stop_from_a_third_host_stops_every_hosts_runners(new_db: NewDb, tmp_path: Path) -> None:
    from aq_core.store_pg import PgStore

    url = new_db()
    work, record = tmp_path / "work", tmp_path / "record.txt"
    work.mkdir()
    slow = {"engine": "command", "cwd": str(work), "command": recording(record, "exec sleep 300")}
    add_jobs(url, tmp_path / "jobs", {"one": slow, "two": slow}, tmp_path / "adder")
    hosts = [runner(url, "--workers", "1", host=f"host-{n}", root=tmp_path / f"host-{n}") for n in "ab"]
    try:
        with PgStore(url, local=tmp_path / "peek") as store:
            wait_until(lambda: len(starts(record)) == 2, 60, "both jobs to start")
            agents = [
                int(wait_until(lambda j=j: store.read_meta(j).get("agent_pid"), 30, "pid")) for j in ("one", "two")
            ]
            assert {store.read_meta(j).get("host") for j in ("one", "two")} == {"host-a", "host-b"}
        stopped = aqpg(url, "stop", host="host-c", root=tmp_path / "host-c", timeout=120)
        outs = finish(hosts, 60)
    finally:
        for proc in hosts:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert stopped.stdout.startswith("stopped 2 runner(s)"), stopped.stdout
    assert "host-a pid" in stopped.stdout and "host-b pid" in stopped.stdout
    assert [proc.returncode for proc in hosts] == [0, 0], outs
    assert all("stop requested by aq stop" in out for out in outs), outs
    assert not any(pid_alive(pid) for pid in agents)
    with PgStore(url, local=tmp_path / "check") as store:
        for job_id in ("one", "two"):
            meta = store.read_meta(job_id)
            assert store.locate(job_id) is State.INBOX
            assert (meta.get("result"), meta.get("attempts")) == ("stopped", "1")
            assert [k for k, _ in meta.pairs].count("attempt") == 1  # counted once, not again by a recovery
        assert sorted(j for j, _, _ in starts(record)) == ["one", "two"]
    # Nobody is left to stop; a runner started afterwards is not stopped by the old request.
    again = aqpg(url, "stop", host="host-c", root=tmp_path / "host-c")
    assert again.returncode == 0 and again.stdout.strip() == "no runner is running"
    later = runner(url, "--workers", "1", host="host-a", root=tmp_path / "host-a")
    try:
        wait_until(lambda: len(starts(record)) == 3, 60, "the new runner to start a job")
        assert later.poll() is None
        last = aqpg(url, "stop", host="host-a", root=tmp_path / "host-a")
        assert last.returncode == 0 and last.stdout.startswith("stopped 1 runner(s): host-a pid"), last.stdout
    finally:
        out = finish([later], 60)[0]
    assert later.returncode == 0, out


@needs_postgresql
def test_a_version_1_schema_migrates_to_the_runners_table(
    new_db: NewDb,
    tmp_path: Path,
    pg_server: PgServer,
) -> None:
    url = new_db(init=False)
    make_version_1(url)  # a database made by the aq before the runners table
    old = aqpg(url, "stop", host="h", root=tmp_path / "r")
    assert old.returncode == 1 and "older than this aq" in old.stderr and "aq store init" in old.stderr
    migrated = aqpg(url, "store", "init", host="h", root=tmp_path / "r")
    assert migrated.returncode == 0 and f"schema migrated from version 1 to {SCHEMA_VERSION}" in migrated.stdout, (
        migrated.stderr
    )
    stop = aqpg(url, "stop", host="h", root=tmp_path / "r")
    assert stop.returncode == 0 and stop.stdout.strip() == "no runner is running"
    name = url.rsplit("/", 1)[1].split("?")[0]
    assert pg_server.sql("SELECT count(*) FROM aq_runners", dbname=name) == [(0,)]


@needs_postgresql
def test_an_expired_lease_is_left_to_its_own_host_for_one_more_lease_while_a_runner_lives_there(
    new_db: NewDb,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pg_server: PgServer,
) -> None:
    from aq_core.procs import start_time
    from aq_core.store_pg import PgStore

    url = new_db(lease=4)
    monkeypatch.setenv("AQ_HOST_ID", "host-a")
    holder = PgStore(url, local=tmp_path / "a")
    neighbour = PgStore(url, local=tmp_path / "a2")  # another runner of host-a, alive
    neighbour.coord.register_runner(os.getpid(), start_time(os.getpid()) or 0.0)
    holder.add("j", b"J", {})
    assert holder.claim("j")
    holder.append_meta("j", holder.coord.claim_meta())
    monkeypatch.setenv("AQ_HOST_ID", "host-b")
    name = url.rsplit("/", 1)[1].split("?")[0]
    try:
        with PgStore(url, local=tmp_path / "b") as other:
            meta = other.read_meta("j")
            holder.close()  # its runner is gone: the lease is not renewed any more
            expired = "SELECT lease_expires < clock_timestamp() FROM aq_jobs WHERE id = 'j'"
            wait_until(lambda: pg_server.sql(expired, dbname=name)[0][0], 10, "the lease to run out")
            assert other.coord.owner_alive("j", meta) is True, "host-a has a live runner: left to it"
            wait_until(lambda: not other.coord.owner_alive("j", meta), 10, "one more lease to pass")
            # With no live runner on host-a, an expired lease is another host's to recover at once.
            pg_server.sql("UPDATE aq_jobs SET lease_expires = clock_timestamp() WHERE id = 'j'", dbname=name)
            assert other.coord.owner_alive("j", meta) is True
            neighbour.coord.unregister_runner(os.getpid())
            assert other.coord.owner_alive("j", meta) is False
    finally:
        neighbour.close()


def _soak_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("soak_pg", SOAK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_soak_tells_a_double_run_from_attempts_one_after_another() -> None:
    read_notes = _soak_module().read_notes
    one_after_another = [
        "start j 1 100 host0 10.0",
        "wrote j j-a1-s0.txt 100 10.5",
        "start j 2 200 host1 11.0",  # pid 100 was killed after 10.5: its last note
        "wrote j j-a2-s0.txt 200 11.5",
        "end j 2 200 12.0",
    ]
    counts, wrote, double = read_notes(one_after_another, {("j", 300)})  # 300: killed before its first note
    assert counts == {"j": 3} and wrote == {"j": ["j-a1-s0.txt", "j-a2-s0.txt"]} and double == {}
    overlapping = [*one_after_another[:2], "start k 1 400 host1 10.2", "wrote k k-a1-s0.txt 400 10.3"]
    overlapping += ["start k 2 500 host2 10.25", "end k 1 400 20.0", "end k 2 500 10.4"]
    assert set(read_notes(overlapping, set())[2]) == {"k"}
    seen = ["start m 1 600 host0 1.0", "overlap m 1 600 700 1.5"]
    assert "saw pid 700" in read_notes(seen, set())[2]["m"]


def test_the_soak_tells_a_start_lost_with_its_host_from_a_miscount() -> None:
    soak = _soak_module()
    unstarted = (
        "aq: 2026-01-01 10:00:05 j: recovered: runner (pid 40) died before starting the engine;"
        " back to inbox/ (no attempt counted)\n"
    )
    failed = "aq: 2026-01-01 10:00:01 j: could not record the internal error (StoreUnavailable: ...); recovery will\n"
    logs = {"host0": failed, "host1": unstarted}
    at = {500: ("host0", 100.5)}  # the host the agent noted as its own, and when it noted its start
    # The documented limit: host0's runner (pid 40, started at 100, dead with its host at 103) started
    # the agent, no record names the agent, and another host recovered the claim as never started.
    death = soak.HostDeath("host0", 40, 100.0, 103.0)
    assert soak.host_death_starts("j", logs, set(), [death], at) == {500}
    killed_with_it = soak.HostDeath("host0", 40, 100.0, 103.0, {("j", 500)})  # killed before it noted its start
    assert soak.host_death_starts("j", logs, set(), [killed_with_it], {}) == {500}
    # Each link missing leaves it a miscount.
    assert soak.host_death_starts("j", logs, {500}, [death], at) == set()  # its attempt record reached the database
    assert soak.host_death_starts("j", logs, set(), [], at) == set()  # no host died: a runner or agent kill
    earlier = {500: ("host0", 99.0)}  # started by an earlier runner
    assert soak.host_death_starts("j", logs, set(), [death], earlier) == set()
    assert soak.host_death_starts("j", logs, set(), [death], {500: ("host0", 104.0)}) == set()  # after the death
    assert soak.host_death_starts("j", logs, set(), [death], {}) == set()  # no note, not killed with the host
    other_runner = soak.HostDeath("host0", 41, 100.0, 103.0)  # recovery names another runner
    assert soak.host_death_starts("j", logs, set(), [other_runner], at) == set()
    assert soak.host_death_starts("j", logs, set(), [soak.HostDeath("host0", None, 0.0, 103.0)], at) == set()
    same_host = {"host0": unstarted, "host1": ""}  # recovered on the host that died
    assert soak.host_death_starts("j", same_host, set(), [death], at) == set()
    assert soak.host_death_starts("j", logs, set(), [death], {500: ("host1", 100.5)}) == set()  # another host's
    assert soak.host_death_starts("k", logs, set(), [death], at) == set()  # another job's recovery


@needs_postgresql
def test_short_many_host_soak_finds_nothing_wrong() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(SOAK),
            "--rounds",
            "1",
            "--hosts",
            "2",
            "--jobs",
            "4",
            "--kills",
            "6",
            "--pg-restarts",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tally = result.stdout.strip().splitlines()[-1]
    assert tally.startswith("tally: rounds=1 hosts=2 ")
    assert "stranded=0 miscounted=0 double_run=0 lost_files=0" in tally
    assert "pg_restarts=1 host_deaths=1" in tally and "runner_kills=0" not in tally

"""The PostgreSQL store against a real server started by the tests (loopback, a temp dir).

Runner processes with distinct ``AQ_HOST_ID`` and queue roots stand in for hosts.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import aq, aq_popen, pid_alive, wait_until, write_job
from pgserver import NewDb, PgServer, dbname
from test_store import StoreContract

from aq_core.errors import AqError
from aq_core.procs import start_time
from aq_core.store import State, host_lock
from aq_core.store_fs import FsStore
from aq_core.store_pg import SCHEMA_VERSION

pytestmark = pytest.mark.requires("postgresql")


def aqpg(url: str, *args: str, host: str, root: Path, env: dict | None = None, timeout: float = 120):
    return aq(*args, root=root, env={"AQ_STORE": url, "AQ_HOST_ID": host, **(env or {})}, timeout=timeout)


def runner(url: str, *args: str, host: str, root: Path) -> subprocess.Popen:
    return aq_popen("run", *args, root=root, env={"AQ_STORE": url, "AQ_HOST_ID": host})


def add_jobs(url: str, folder: Path, jobs: dict[str, dict], root: Path) -> None:
    paths = [str(write_job(folder, job_id, front)) for job_id, front in jobs.items()]
    result = aqpg(url, "add", *paths, host="adder", root=root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == list(jobs)


def recording(record: Path, then: str = "") -> str:
    """A trivial agent: one line per start (job, attempt, host) appended to ``record``."""
    return f'echo "$AQ_JOB_ID $AQ_ATTEMPT $AQ_HOST_ID" >> {record}' + (f"; {then}" if then else "")


def starts(record: Path) -> list[tuple[str, str, str]]:
    if not record.exists():
        return []
    return [tuple(line.split()) for line in record.read_text().splitlines()]  # type: ignore[misc]


def finish(procs: list[subprocess.Popen], timeout: float) -> list[str]:
    outs = []
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        outs.append(out)
    return outs


def wait_for(condition: Callable[[], object], timeout: float) -> bool:
    """Like ``wait_until`` but False on a timeout (to show a runner's output in the failure)."""
    try:
        return bool(wait_until(condition, timeout))
    except AssertionError:
        return False


# -- the contract and the store's own guarantees ---------------------------------------------------


class TestPgStore(StoreContract):
    @pytest.fixture
    def store(self, pg_store):
        return pg_store

    def test_meta_is_insert_only_in_the_database(self, pg_store, pg_server: PgServer) -> None:
        pg_store.add("a", b"A", {"x": 1})
        pg_store.append_meta("a", {"x": 2})
        db = dbname(pg_store.url)
        with pytest.raises(Exception, match="insert-only"):
            pg_server.sql("UPDATE aq_meta SET value = '9'", dbname=db)
        with pytest.raises(Exception, match="insert-only"):
            pg_server.sql("DELETE FROM aq_meta", dbname=db)
        assert pg_store.read_meta("a").pairs == [("x", "1"), ("x", "2")]

    def test_read_job_of_the_wrong_state_is_not_found(self, pg_store) -> None:
        pg_store.add("a", b"\x00binary\xff", {})
        assert pg_store.read_job("a", State.INBOX) == b"\x00binary\xff"
        with pytest.raises(FileNotFoundError):
            pg_store.read_job("a", State.DONE)
        assert pg_store.locate("nope") is None

    def test_describe_never_shows_the_password(self, new_db: NewDb, tmp_path: Path) -> None:
        from aq_core.store_pg import PgStore

        url = new_db().replace("postgresql://aq@", "postgresql://aq:s3cret@")  # trust auth ignores it
        with PgStore(url + "?lease=7", local=tmp_path / "l") as store:
            assert "s3cret" not in store.describe() and store.describe().startswith("postgresql://aq@127.0.0.1:")
            assert store.lease == 7.0


def _locker(url: str, local: str, host: str, ready: multiprocessing.Event) -> None:
    from aq_core.store_pg import PgStore

    os.environ["AQ_HOST_ID"] = host
    store = PgStore(url, local=local)
    assert store.coord.try_lock("lock:shared") is not None
    ready.set()
    time.sleep(600)


def _dead_lock_holder(url: str, tmp_path: Path, host: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_locker, args=(url, str(tmp_path / host), host, ready))
    proc.start()
    assert ready.wait(30)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)


def test_a_lock_of_a_dead_process_frees_at_once_on_its_host_and_after_the_lease_elsewhere(
    new_db: NewDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aq_core.store_pg import PgStore

    url = new_db(lease=2)
    monkeypatch.setenv("AQ_HOST_ID", "here")
    _dead_lock_holder(url, tmp_path, "here")
    with PgStore(url, local=tmp_path / "a") as store:
        lock = store.coord.try_lock("lock:shared")
        assert lock is not None, "same host: the holder's pid is dead, the lock is free at once"
        lock.release()

    _dead_lock_holder(url, tmp_path, "elsewhere")
    with PgStore(url, local=tmp_path / "b") as store:
        died = time.monotonic()
        assert store.coord.try_lock("lock:shared") is None, "another host's holder: wait for its lease"
        lock = wait_until(lambda: store.coord.try_lock("lock:shared"), 10, "the lease to run out")
        assert 0.5 < time.monotonic() - died < 4.5
        lock.release()


def test_a_lease_taken_over_is_reported_lost_and_the_old_holder_cannot_move_the_job(
    new_db: NewDb,
    tmp_path: Path,
    pg_server: PgServer,
) -> None:
    from aq_core.store_pg import PgStore

    url = new_db(lease=3)
    with PgStore(url, local=tmp_path / "a") as store:
        store.add("j", b"J", {})
        lock = store.coord.try_lock("job:j")
        assert store.claim("j")
        assert store.coord.renew(["j"]) == set()
        time.sleep(1.2)  # a heartbeat renewed it
        assert store.coord.renew(["j"]) == set()
        # Another runner recovered and claimed it after the lease (forced here).
        pg_server.sql("UPDATE aq_jobs SET lease_token = 'someone-else' WHERE id = 'j'", dbname=dbname(url))
        wait_until(lambda: store.coord.renew(["j"]) == {"j"}, 5, "the lost lease to be reported")
        assert store.move("j", State.BUILDING, State.DONE) is False
        assert store.locate("j") is State.BUILDING
        lock.release()


def test_an_unrenewed_lease_makes_an_orphan_after_it_runs_out(new_db: NewDb, tmp_path: Path, monkeypatch) -> None:
    from aq_core.store_pg import PgStore

    url = new_db(lease=2)
    monkeypatch.setenv("AQ_HOST_ID", "host-a")
    holder = PgStore(url, local=tmp_path / "a")
    holder.add("j", b"J", {})
    assert holder.claim("j")
    holder.append_meta("j", holder.coord.claim_meta())
    monkeypatch.setenv("AQ_HOST_ID", "host-b")
    with PgStore(url, local=tmp_path / "b") as other:
        meta = other.read_meta("j")
        assert meta.get("host") == "host-a"
        assert other.coord.owner_alive("j", meta) is True
        holder.close()  # stops renewing (a partition, a frozen host)
        stopped = time.monotonic()
        wait_until(lambda: not other.coord.owner_alive("j", meta), 6, "the lease to run out")
        assert time.monotonic() - stopped < 2 * 2 + 1


def _claimer(url: str, local: str, ids: list[str], queue: multiprocessing.Queue, start: multiprocessing.Event) -> None:
    from aq_core.store_pg import PgStore

    store = PgStore(url, local=local)
    start.wait()
    queue.put([job_id for job_id in ids if store.claim(job_id)])


def test_racing_claims_on_many_processes_have_exactly_one_winner(pg_store, tmp_path: Path) -> None:
    ids = [f"j{i:03d}" for i in range(200)]
    for job_id in ids:
        pg_store.add(job_id, b"x", {})
    ctx = multiprocessing.get_context("spawn")
    queue, start = ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(target=_claimer, args=(pg_store.url, str(tmp_path / f"h{i}"), ids, queue, start)) for i in range(6)
    ]
    for p in procs:
        p.start()
    start.set()
    won = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    claimed = [job_id for batch in won for job_id in batch]
    assert sorted(claimed) == ids, "each job claimed by exactly one process"


# -- schema and connection errors -----------------------------------------------------------------


def test_store_init_is_idempotent_and_a_newer_schema_is_a_clear_error(
    new_db: NewDb,
    tmp_path: Path,
    pg_server: PgServer,
) -> None:
    url = new_db(init=False)
    before = aqpg(url, "status", host="h", root=tmp_path / "r")
    assert before.returncode == 1 and "no aq schema yet" in before.stderr and "aq store init" in before.stderr
    first = aq("store", "init", "--store", url, root=tmp_path / "r")
    assert first.returncode == 0 and f"schema created (version {SCHEMA_VERSION})" in first.stdout, first.stderr
    again = aqpg(url, "store", "init", host="h", root=tmp_path / "r")
    assert again.returncode == 0 and "up to date" in again.stdout, again.stderr
    assert pg_server.sql("SELECT count(*) FROM aq_schema_version", dbname=dbname(url)) == [(SCHEMA_VERSION,)]
    pg_server.sql("INSERT INTO aq_schema_version (version) VALUES (99)", dbname=dbname(url))
    for args in (("status",), ("store", "init")):
        result = aqpg(url, *args, host="h", root=tmp_path / "r")
        assert result.returncode == 1, result
        assert f"schema version 99, newer than this aq knows ({SCHEMA_VERSION})" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_connection_errors_are_one_line_naming_host_and_db_never_the_password(
    pg_server: PgServer,
    tmp_path: Path,
) -> None:
    refused = aq("--store", "postgresql://aq:s3cret@127.0.0.1:1/somedb", "status", root=tmp_path / "r")
    no_db = aq("--store", pg_server.url("nosuchdb").replace("aq@", "aq:s3cret@"), "add", "x.md", root=tmp_path / "r")
    for result, where in ((refused, "127.0.0.1:1/somedb"), (no_db, f"127.0.0.1:{pg_server.port}/nosuchdb")):
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("aq: store: cannot connect to postgresql://aq@"), lines
        assert where in lines[0] and "s3cret" not in result.stderr + result.stdout
    bad_lease = aq("--store", pg_server.url("x", lease="soon"), "status", root=tmp_path / "r")
    assert bad_lease.returncode == 2 and "lease='soon'" in bad_lease.stderr


# -- many runners, many hosts --------------------------------------------------------------------


def test_four_hosts_run_200_jobs_each_exactly_once(new_db: NewDb, tmp_path: Path) -> None:
    # 200 jobs: every host claims dozens against the three others (a race a job); the many-host soak runs more.
    url = new_db()
    work, record = tmp_path / "work", tmp_path / "record.txt"
    work.mkdir()
    jobs = {f"j{i:03d}": {"engine": "command", "cwd": str(work), "command": recording(record)} for i in range(200)}
    add_jobs(url, tmp_path / "jobs", jobs, tmp_path / "adder")
    hosts = [f"host-{n}" for n in range(4)]
    procs = [runner(url, "--once", "--workers", "2", host=h, root=tmp_path / h) for h in hosts]
    outs = finish(procs, 150)
    assert all(p.returncode == 0 for p in procs), outs
    seen = starts(record)
    assert len(seen) == 200 and sorted(j for j, _, _ in seen) == sorted(jobs), "each job's agent started once"
    assert {a for _, a, _ in seen} == {"1"}
    by_host = Counter(h for _, _, h in seen)
    assert set(by_host) <= set(hosts) and len(by_host) >= 2, by_host
    from aq_core.store_pg import PgStore

    with PgStore(url, local=tmp_path / "check") as store:
        assert [e.id for e in store.list(State.DONE)] == sorted(jobs)
        assert store.list(State.INBOX) == store.list(State.BUILDING) == store.list(State.FAILED) == []
        for job_id, _, host in seen:
            m = store.read_meta(job_id)
            assert (m.get("attempts"), m.get("result"), m.get("host")) == ("1", "ok", host)
            assert sum(1 for k, _ in m.pairs if k == "claimed") == 1


def test_dropped_connections_mid_run_are_survived(new_db: NewDb, tmp_path: Path, pg_server: PgServer) -> None:
    url = new_db()
    work, record = tmp_path / "work", tmp_path / "record.txt"
    work.mkdir()
    jobs = {
        f"d{i:03d}": {"engine": "command", "cwd": str(work), "command": recording(record, "sleep 0.1")}
        for i in range(120)
    }
    add_jobs(url, tmp_path / "jobs", jobs, tmp_path / "adder")
    procs = [runner(url, "--once", "--workers", "2", host=f"host-{n}", root=tmp_path / f"h{n}") for n in range(3)]
    killed = []
    stop = threading.Event()

    def terminator() -> None:
        while not stop.wait(0.4):
            killed.append(pg_server.terminate(dbname(url)))

    thread = threading.Thread(target=terminator, daemon=True)
    thread.start()
    try:
        outs = finish(procs, 150)
    finally:
        stop.set()
        thread.join()
    assert sum(killed) >= 6, f"connections terminated: {killed}"
    assert all(p.returncode == 0 for p in procs), outs
    seen = starts(record)
    assert sorted(j for j, _, _ in seen) == sorted(jobs) and {a for _, a, _ in seen} == {"1"}
    from aq_core.store_pg import PgStore

    with PgStore(url, local=tmp_path / "check") as store:
        assert [e.id for e in store.list(State.DONE)] == sorted(jobs)
        for job_id in jobs:
            m = store.read_meta(job_id)
            assert (m.get("attempts"), m.get("result"), m.get("decision")) == ("1", "ok", "done"), job_id
            assert [k for k, _ in m.pairs].count("attempt") == 1


def _agent_pid(url: str, tmp_path: Path, job_id: str) -> int:
    from aq_core.store_pg import PgStore

    with PgStore(url, local=tmp_path / "peek") as store:
        return int(wait_until(lambda: store.read_meta(job_id).get("agent_pid"), 15, "the agent pid"))


def test_a_killed_runners_job_is_recovered_by_another_host_after_its_lease(new_db: NewDb, tmp_path: Path) -> None:
    lease = 3
    url = new_db(lease=lease)
    work, record = tmp_path / "work", tmp_path / "record.txt"
    work.mkdir()
    command = recording(record, 'if [ "$AQ_ATTEMPT" = 1 ]; then exec sleep 300; fi')
    add_jobs(url, tmp_path / "jobs", {"victim": {"engine": "command", "cwd": str(work), "command": command}}, tmp_path)
    first = runner(url, host="host-a", root=tmp_path / "a")
    wait_until(lambda: starts(record), 30, "the first attempt to start")
    agent = _agent_pid(url, tmp_path, "victim")
    # The host dies: its runner and its agent.
    first.kill()
    os.killpg(agent, signal.SIGKILL)
    killed_at = time.time()
    first.wait(10)
    second = runner(url, host="host-b", root=tmp_path / "b")  # idle until the lease runs out
    from aq_core.store_pg import PgStore

    try:
        with PgStore(url, local=tmp_path / "peek") as store:
            wait_until(lambda: store.locate("victim") is State.DONE, 30, "host-b to recover and finish the job")
    finally:
        second.terminate()
    out = finish([second], 30)[0]
    assert second.returncode == 0, out
    assert [(j, a, h) for j, a, h in starts(record)] == [("victim", "1", "host-a"), ("victim", "2", "host-b")]
    with PgStore(url, local=tmp_path / "check") as store:
        assert store.locate("victim") is State.DONE
        m = store.read_meta("victim")
        assert (m.get("attempts"), m.get("result"), m.get("host")) == ("2", "ok", "host-b")
        recovered = [float(v) for k, v in m.pairs if k == "recovered"]
        assert len(recovered) == 1 and [v for k, v in m.pairs if k == "result"][:1] == ["orphaned"]
        # Not before the lease (renewed at most a third of it before the kill) ran out; within two leases.
        assert lease * 2 / 3 - 0.5 <= recovered[0] - killed_at <= 2 * lease + 1.5, recovered[0] - killed_at
    assert "recovered orphan" in out


def test_hosts_recovering_at_once_recover_an_expired_lease_once(new_db: NewDb, tmp_path: Path) -> None:
    url = new_db(lease=2)
    work, record = tmp_path / "work", tmp_path / "record.txt"
    work.mkdir()
    command = recording(record, "exec sleep 300")
    add_jobs(url, tmp_path / "jobs", {"racy": {"engine": "command", "cwd": str(work), "command": command}}, tmp_path)
    first = runner(url, host="host-a", root=tmp_path / "a")
    wait_until(lambda: starts(record), 30, "the attempt to start")
    agent = _agent_pid(url, tmp_path, "racy")
    first.kill()
    os.killpg(agent, signal.SIGKILL)
    first.wait(10)
    time.sleep(2.2)  # the lease has run out
    env = {"AQ_STORE": url}
    procs = [aq_popen("recover", root=tmp_path / f"r{n}", env={**env, "AQ_HOST_ID": f"host-{n}"}) for n in "bcde"]
    outs = finish(procs, 60)
    assert sum(int(o.strip().splitlines()[-1].split()[1]) for o in outs) == 1, outs
    from aq_core.store_pg import PgStore

    with PgStore(url, local=tmp_path / "check") as store:
        assert store.locate("racy") is State.INBOX
        m = store.read_meta("racy")
        assert sum(1 for k, _ in m.pairs if k == "recovered") == 1
        assert (m.get("attempts"), m.get("orphans"), m.get("result")) == ("1", "1", "orphaned")


def test_work_tree_locks_are_per_host(new_db: NewDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aq_core.store_pg import PgStore

    url = new_db()
    stores, names = {}, {}
    for host in ("host-a", "host-b"):
        monkeypatch.setenv("AQ_HOST_ID", host)
        stores[host] = PgStore(url, local=tmp_path / host)
        # What a runner on that host asks for: the work_lock hook's answer, scoped to its host.
        names[host] = host_lock("git:/home/me/repo")
    a, b = stores["host-a"], stores["host-b"]
    try:
        held = a.coord.try_lock(names["host-a"])
        assert held is not None and a.coord.try_lock(names["host-a"]) is None
        assert b.coord.try_lock(names["host-b"]) is not None, "the same path on another host is another repo"
        named = a.coord.try_lock("lock:deploy")
        assert named is not None and b.coord.try_lock("lock:deploy") is None, "a job's lock: holds across hosts"
    finally:
        a.close()
        b.close()


def test_on_its_own_host_a_dead_runner_is_recovered_at_once(new_db: NewDb, tmp_path: Path) -> None:
    url = new_db()  # a 30 s lease: only the pid check can be this fast
    work, record = tmp_path / "work", tmp_path / "record.txt"
    work.mkdir()
    command = recording(record, "exec sleep 300")
    add_jobs(url, tmp_path / "jobs", {"lone": {"engine": "command", "cwd": str(work), "command": command}}, tmp_path)
    first = runner(url, host="host-a", root=tmp_path / "a")
    wait_until(lambda: starts(record), 30, "the attempt to start")
    agent = _agent_pid(url, tmp_path, "lone")
    first.kill()
    first.wait(10)
    elsewhere = aqpg(url, "recover", host="host-b", root=tmp_path / "b")
    assert "recovered 0 orphan" in elsewhere.stdout, elsewhere.stdout + elsewhere.stderr
    assert pid_alive(agent), "another host never touches this host's processes"
    here = aqpg(url, "recover", host="host-a", root=tmp_path / "a")
    assert "recovered 1 orphan" in here.stdout, here.stdout + here.stderr
    wait_until(lambda: not pid_alive(agent), 10, "the leftover agent to be ended")
    status = json.loads(aqpg(url, "status", "--json", host="host-b", root=tmp_path / "b").stdout)
    row = next(r for r in status["jobs"] if r["id"] == "lone")
    assert (row["state"], str(row["attempts"]), row["result"]) == ("inbox", "1", "orphaned")


def test_a_runner_cut_off_from_the_store_stops_its_agent_before_the_lease_runs_out(tmp_path: Path) -> None:
    from aq_core.store_pg import PgStore, init_schema

    lease = 6
    server = PgServer(durable=True).start()  # its own server, crash-safe: this test kills it
    try:
        url = server.url(server.create_database(), lease=lease)
        init_schema(url)
        work, record = tmp_path / "work", tmp_path / "record.txt"
        work.mkdir()
        command = recording(record, 'if [ "$AQ_ATTEMPT" = 1 ]; then exec sleep 300; fi')
        add_jobs(url, tmp_path / "jobs", {"cut": {"engine": "command", "cwd": str(work), "command": command}}, tmp_path)
        proc = runner(url, host="host-a", root=tmp_path / "a")
        try:
            wait_until(lambda: starts(record), 30, "the attempt to start")
            agent = _agent_pid(url, tmp_path, "cut")
            server.stop("immediate")
            cut_at = time.monotonic()
            wait_until(lambda: not pid_alive(agent), lease + 2, "the runner to stop its agent")
            assert time.monotonic() - cut_at < lease, "stopped before the lease ran out"
            time.sleep(1.0)
            server.start()
            # Back: the runner recovers its own lost job (the attempt counted) and runs it again.
            with PgStore(url, local=tmp_path / "peek") as store:
                done = wait_for(lambda: store.locate("cut") is State.DONE, 30)
        finally:
            proc.terminate()
        out = finish([proc], 30)[0]
        assert done, out
        assert proc.returncode == 0, out
        assert "lease lost" in out
        assert [(j, a) for j, a, _ in starts(record)] == [("cut", "1"), ("cut", "2")], out
        with PgStore(url, local=tmp_path / "check") as store:
            assert store.locate("cut") is State.DONE
            m = store.read_meta("cut")
            assert (m.get("attempts"), m.get("result")) == ("2", "ok")
            assert sum(1 for k, _ in m.pairs if k == "recovered") == 1
    finally:
        server.destroy()


# -- every command on the shared store -------------------------------------------------------------


def test_the_commands_work_against_postgresql(new_db: NewDb, tmp_path: Path) -> None:
    url = new_db()
    work = tmp_path / "work"
    work.mkdir()
    a, b = tmp_path / "host-a", tmp_path / "host-b"
    add_jobs(
        url,
        tmp_path / "jobs",
        {
            "good": {"engine": "command", "cwd": str(work), "command": "echo the-agent-output"},
            "bad": {"engine": "command", "cwd": str(work), "command": "exit 3"},
        },
        a,
    )
    dup = aqpg(url, "add", str(tmp_path / "jobs" / "good.md"), host="host-a", root=a)
    assert dup.returncode == 2 and "already exists" in dup.stderr
    ran = aqpg(url, "run", "--once", host="host-a", root=a)
    assert ran.returncode == 0, ran.stdout + ran.stderr

    status = json.loads(aqpg(url, "status", "--json", host="host-b", root=b).stdout)
    states = {r["id"]: (r["state"], r["result"]) for r in status["jobs"]}
    assert states == {"good": ("done", "ok"), "bad": ("failed", "crash")}
    table = aqpg(url, "status", host="host-b", root=b)
    assert table.returncode == 0 and "good" in table.stdout and "done" in table.stdout
    overview = json.loads(aqpg(url, "insights", "--json", host="host-b", root=b).stdout)
    assert sorted(r["id"] for r in overview["jobs"]) == ["bad", "good"]
    record = json.loads(aqpg(url, "insights", "good", "--json", host="host-b", root=b).stdout)
    assert [str(r["attempt"]) for r in record["runs"]] == ["1"] and record["runs"][0]["result"] == "ok"

    here = aqpg(url, "logs", "good", host="host-a", root=a)
    assert here.returncode == 0 and "the-agent-output" in here.stdout
    there = aqpg(url, "logs", "good", host="host-b", root=b)
    assert there.returncode == 1 and "on host 'host-a'" in there.stderr

    retried = aqpg(url, "retry", "bad", host="host-b", root=b)
    assert retried.returncode == 0 and "back in inbox" in retried.stdout
    cancelled = aqpg(url, "cancel", "bad", host="host-b", root=b)
    assert cancelled.returncode == 0 and "cancelled (was waiting)" in cancelled.stdout
    finished = aqpg(url, "cancel", "good", host="host-b", root=b)
    assert finished.returncode == 1 and "already finished" in finished.stderr

    # A running job on host-a is cancelled from host-b, and its runner stopped from host-b.
    add_jobs(url, tmp_path / "jobs2", {"slow": {"engine": "command", "cwd": str(work), "command": "sleep 60"}}, a)
    proc = runner(url, host="host-a", root=a)
    try:
        from aq_core.store_pg import PgStore

        with PgStore(url, local=tmp_path / "peek") as store:
            wait_until(lambda: store.read_meta("slow").get("agent_pid"), 30, "the slow job to start")
        cancel = aqpg(url, "cancel", "slow", host="host-b", root=b)
        assert cancel.returncode == 0 and "was running" in cancel.stdout and "cancelled" in cancel.stdout, cancel
        dash = aq_popen("dashboard", "--port", "0", root=b, env={"AQ_STORE": url, "AQ_HOST_ID": "host-b"})
        try:
            line = dash.stdout.readline()
            address = line[line.index("http://") :].split()[0]
            with urllib.request.urlopen(address.rstrip("/") + "/api/state", timeout=30) as response:
                state = json.loads(response.read())
            assert {j["id"]: j["state"] for j in state["jobs"]} == {"good": "done", "bad": "failed", "slow": "failed"}
            assert "s3cret" not in json.dumps(state) and state["root"].startswith("postgresql://")
        finally:
            dash.terminate()
            dash.wait(10)
        stop_b = aqpg(url, "stop", host="host-b", root=b)
        assert stop_b.stdout.startswith("stopped 1 runner(s): host-a pid"), stop_b
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    with PgStore(url, local=tmp_path / "check") as store:
        assert store.read_meta("slow").get("result") == "cancelled"
        assert store.locate("slow") is State.FAILED


# -- aq store migrate ---------------------------------------------------------------------------


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "MIGRATED"
    }


def test_migrate_copies_a_filesystem_queue_and_refuses_while_a_runner_is_live(new_db: NewDb, tmp_path: Path) -> None:
    from aq_core.store_pg import PgStore

    root = tmp_path / "fsq"
    work = tmp_path / "work"
    work.mkdir()
    fs_jobs = {
        "one": {"engine": "command", "cwd": str(work), "command": "true"},
        "two": {"engine": "command", "cwd": str(work), "command": "exit 1"},
    }
    paths = [str(write_job(tmp_path / "jobs", j, f)) for j, f in fs_jobs.items()]
    assert aq("add", *paths, root=root).returncode == 0
    assert aq("run", "--once", root=root).returncode == 0
    later = {"three": {"engine": "command", "cwd": str(work), "command": "true"}, "four": fs_jobs["one"]}
    assert aq("add", *[str(write_job(tmp_path / "jobs", j, f)) for j, f in later.items()], root=root).returncode == 0
    fs = FsStore(root)
    assert fs.claim("four")  # an orphan in building/ (its runner is gone)
    fs.append_meta("four", {"claimed": 1.5, "pid": 999999, "host": "old-host", "note": "a\nb \\ c = d"})
    fs.engines.append("claude", {"paused": 1, "pause_until": 2, "pause_engine": "claude"})
    before = _tree_digest(root)
    url = new_db().replace("aq@", "aq:s3cret@")

    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        fs.coord.register_runner(sleeper.pid, start_time(sleeper.pid) or 0.0)
        refused = aq("store", "migrate", "--from", str(root), "--to", url, root=tmp_path / "x")
        assert refused.returncode == 1 and "a runner is running" in refused.stderr, refused
        with PgStore(url, local=tmp_path / "l") as store:
            assert store.list() == []
    finally:
        sleeper.kill()
        sleeper.wait()
        fs.coord.unregister_runner(sleeper.pid)

    done = aq("store", "migrate", "--from", str(root), "--to", url, root=tmp_path / "x")
    assert done.returncode == 0, done.stderr
    assert "migrated 4 job(s)" in done.stdout and "s3cret" not in done.stdout
    marker = (root / "MIGRATED").read_text()
    assert "postgresql://aq@127.0.0.1:" in marker and "s3cret" not in marker
    assert _tree_digest(root) == before, "the source is left intact"
    with PgStore(url, local=tmp_path / "l") as store:
        assert [(e.id, e.state) for e in store.list()] == [(e.id, e.state) for e in fs.list()]
        for entry in fs.list():
            assert store.read_job(entry.id, entry.state) == fs.read_job(entry.id, entry.state)
            assert store.read_meta(entry.id).pairs == fs.read_meta(entry.id).pairs
            assert store.read_meta(entry.id).pairs, entry.id
        assert store.engines.read("claude").pairs == fs.engines.read("claude").pairs
        assert {e.state for e in store.list()} == {State.DONE, State.FAILED, State.INBOX, State.BUILDING}
    again = aq("store", "migrate", "--from", str(root), "--to", url, root=tmp_path / "x")
    assert again.returncode == 1 and "nothing was copied" in again.stderr

    # The migrated queue runs on PostgreSQL: the orphan is recovered, the waiting jobs finish.
    ran = aqpg(url, "run", "--once", host="new-host", root=tmp_path / "x")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    with PgStore(url, local=tmp_path / "l") as store:
        assert store.locate("three") is store.locate("four") is State.DONE
        assert store.read_meta("four").get("result") == "ok"


def test_aq_errors_are_raised_for_bad_urls(tmp_path: Path) -> None:
    from aq_core.store_pg import PgStore

    with pytest.raises(AqError):
        PgStore("postgresql://aq@127.0.0.1:1/x?lease=0.1", local=tmp_path / "l")

"""The plan on the PostgreSQL store: the claim query checks dependencies and start times, the list
is in priority order, runners on two hosts run a plan in order, and ``aq store init`` migrates a
version 1 schema."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from helpers import write_job
from pgserver import NewDb, PgServer, dbname, make_version_1
from test_store_pg import aqpg, runner

from aq_core.store import State

pytestmark = pytest.mark.requires("postgresql")


def add(url: str, folder: Path, root: Path, job_id: str, **front) -> None:
    path = write_job(folder, job_id, {"engine": "command", "command": "true", "cwd": str(folder), **front})
    result = aqpg(url, "add", str(path), host="adder", root=root)
    assert result.returncode == 0, result.stderr


def test_the_claim_query_takes_only_a_job_whose_dependencies_are_done_and_whose_time_came(
    new_db: NewDb,
    tmp_path: Path,
) -> None:
    from aq_core.store_pg import PgStore

    url, root = new_db(), tmp_path / "r"
    add(url, tmp_path, root, "schema")
    add(url, tmp_path, root, "queries", after="schema", priority=3)
    add(url, tmp_path, root, "later", not_before=time.time() + 3600, priority=5)
    store = PgStore(url, local=tmp_path / "local")
    try:
        assert [e.id for e in store.list(State.INBOX)] == ["later", "queries", "schema"], "priority order"
        assert store.claim("queries") is False, "schema is not done yet"
        assert store.claim("later") is False, "not before its time"
        assert store.claim("schema") is True
        assert store.move("schema", State.BUILDING, State.DONE) is True
        assert store.claim("queries") is True
        record = store.read_meta("queries").last
        assert (record["after"], record["priority"]) == ("schema", "3")
    finally:
        store.close()


def test_two_hosts_run_a_plan_in_order_and_fail_the_dependants_of_a_failed_job_once(
    new_db: NewDb,
    tmp_path: Path,
) -> None:
    url, record = new_db(), tmp_path / "record"
    work = tmp_path / "w"
    work.mkdir()
    note = f'echo "$AQ_JOB_ID $AQ_HOST_ID" >> {record}'
    jobs = {
        "schema": {"command": note},
        "queries": {"command": note, "after": "schema"},
        "tests": {"command": note, "after": ["schema", "queries"]},
        "broken": {"command": f"{note}; exit 3"},
        "needs-broken": {"command": note, "after": "broken"},
        "needs-that": {"command": note, "after": "needs-broken"},
        "urgent": {"command": note, "priority": 9},
    }
    paths = [str(write_job(tmp_path, j, {"engine": "command", "cwd": str(work), **f})) for j, f in jobs.items()]
    added = aqpg(url, "add", *paths, host="adder", root=tmp_path / "adder")
    assert added.returncode == 0, added.stderr
    hosts = [runner(url, "--once", host=f"host-{n}", root=tmp_path / f"h{n}") for n in range(2)]
    for proc in hosts:
        out, _ = proc.communicate(timeout=180)
        assert proc.returncode == 0, out
    lines = record.read_text().split()
    ran = lines[::2]
    assert sorted(ran) == ["broken", "queries", "schema", "tests", "urgent"], "each ran once; dependants never"
    assert ran.index("schema") < ran.index("queries") < ran.index("tests")
    status = json.loads(aqpg(url, "status", "--json", host="h", root=tmp_path / "adder").stdout)
    rows = {r["id"]: r for r in status["jobs"]}
    assert rows["tests"]["after"] == ["schema", "queries"] and rows["urgent"]["priority"] == 9
    for job_id, dependency in (("needs-broken", "broken"), ("needs-that", "needs-broken")):
        assert (rows[job_id]["state"], rows[job_id]["result"]) == ("failed", "dependency_failed")
        explained = json.loads(aqpg(url, "explain", job_id, "--json", host="h", root=tmp_path / "adder").stdout)
        assert explained["failed_dependency"] == dependency
    retried = aqpg(url, "retry", "broken", host="h", root=tmp_path / "adder")
    assert retried.returncode == 0, retried.stderr
    assert len(retried.stdout.splitlines()) == 3
    waiting = json.loads(aqpg(url, "explain", "needs-that", "--json", host="h", root=tmp_path / "adder").stdout)
    assert {"kind": "dependency", "job": "needs-broken", "state": "inbox"} in waiting["reasons"]


def test_store_init_migrates_a_version_1_schema_keeping_its_jobs(
    new_db: NewDb,
    tmp_path: Path,
    pg_server: PgServer,
) -> None:
    from aq_core.store_pg.schema import SCHEMA_VERSION

    url = new_db(init=False)
    db = dbname(url)
    # Schema version 1, as `aq store init` of the previous aq made it, with a waiting job.
    make_version_1(
        url,
        "INSERT INTO aq_jobs (id, state, data, queued) VALUES ('old', 'inbox',"
        " convert_to('---\nengine: command\ncommand: \"true\"\ncwd: /tmp\n---\nold\n', 'UTF8'), 1)",
    )

    stale = aqpg(url, "status", host="h", root=tmp_path / "r")
    assert stale.returncode == 1 and "older than this aq" in stale.stderr
    migrated = aqpg(url, "store", "init", host="h", root=tmp_path / "r")
    assert migrated.returncode == 0, migrated.stderr
    assert f"schema migrated from version 1 to {SCHEMA_VERSION}" in migrated.stdout
    assert pg_server.sql("SELECT max(version) FROM aq_schema_version", dbname=db) == [(SCHEMA_VERSION,)]
    assert pg_server.sql("SELECT id, after, priority, not_before FROM aq_jobs", dbname=db) == [("old", [], 0, None)]
    add(url, tmp_path, tmp_path / "r", "new", after="old", priority=2)
    run = aqpg(url, "run", "--once", host="h", root=tmp_path / "r")
    assert run.returncode == 0, run.stdout + run.stderr
    rows = {
        r["id"]: r["state"]
        for r in json.loads(aqpg(url, "status", "--json", host="h", root=tmp_path / "r").stdout)["jobs"]
    }
    assert rows == {"old": "done", "new": "done"}


def test_adding_many_jobs_keeps_the_plan_of_their_plan_columns_statement(pg_store) -> None:
    """``aq add`` sets each job's plan columns by one statement whose plan the server keeps. psycopg
    prepares a statement after its fifth use; the server then plans it afresh for its first five
    runs, and keeps a generic plan once it costs no more (a one-id array's ``= ANY`` never did)."""
    for n in range(20):
        pg_store.add(f"j{n}", b"x", {"priority": str(n), "after": "j0" if n else ""})
    plans = pg_store.conn.do(
        lambda db, _: db.execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE '%UPDATE aq_jobs j SET%'"
        ).fetchall()
    )
    assert len(plans) == 1, plans
    generic, custom = plans[0]
    assert (generic, custom) == (10, 5), plans  # of the 15 runs once prepared
    assert [e.id for e in pg_store.list(State.INBOX)][:3] == ["j19", "j18", "j17"], "priority order"

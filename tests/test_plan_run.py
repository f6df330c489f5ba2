"""A plan run by a real runner: dependencies, a failed dependency's cascade and retry, priority,
not_before, building on a parent's work (real git), and ``aq explain`` -- on the filesystem store."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from helpers import aq, git, git_repo, meta, state_of, stub, write_job


def job(folder: Path, job_id: str, cwd: Path, *args: str, **front) -> Path:
    return write_job(folder, job_id, {"engine": "command", "command": stub(*args), "cwd": str(cwd), **front})


def started_order(record: Path) -> list[str]:
    return [line.split()[1] for line in record.read_text().splitlines() if line.startswith("start ")]


def test_a_plan_of_three_runs_in_order_and_explain_says_why(tmp_path: Path) -> None:
    root, work, record = tmp_path / "q", tmp_path / "w", tmp_path / "record"
    work.mkdir()
    files = [
        job(tmp_path, "tests", work, "--record", str(record), after=["schema", "queries"]),
        job(tmp_path, "queries", work, "--record", str(record), after="schema"),
        job(tmp_path, "schema", work, "--record", str(record)),
    ]
    assert aq("add", *map(str, files), root=root).returncode == 0
    explained = json.loads(aq("explain", "tests", "--json", root=root).stdout)
    assert explained["id"] == "tests" and explained["state"] == "inbox" and explained["runnable"] is False
    assert {"kind": "dependency", "job": "schema", "state": "inbox"} in explained["reasons"]
    assert {"kind": "dependency", "job": "queries", "state": "inbox"} in explained["reasons"]
    assert {"kind": "no_runner"} in explained["reasons"]
    text = aq("explain", "tests", root=root).stdout.splitlines()
    assert text[0] == "tests is waiting in inbox/ and cannot start yet."
    assert "It waits for job schema (in inbox/)." in text
    status = json.loads(aq("status", "--json", root=root).stdout)
    rows = {r["id"]: r for r in status["jobs"]}
    assert rows["tests"]["after"] == ["schema", "queries"] and rows["schema"]["after"] is None
    assert rows["tests"]["priority"] is None and rows["tests"]["not_before"] is None
    table = aq("status", root=root).stdout
    assert "after schema, queries" in table
    run = aq("run", "--once", root=root, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert started_order(record) == ["schema", "queries", "tests"]
    assert [state_of(root, j) for j in ("schema", "queries", "tests")] == ["done"] * 3
    done = json.loads(aq("explain", "tests", "--json", root=root).stdout)
    assert (done["state"], done["result"], done["reasons"]) == ("done", "ok", [])


def test_a_failed_dependency_fails_its_dependants_transitively_and_retry_brings_them_back(tmp_path: Path) -> None:
    root, work, record = tmp_path / "q", tmp_path / "w", tmp_path / "record"
    work.mkdir()
    files = [
        job(tmp_path, "schema", work, "--record", str(record), "--exit", "3"),
        job(tmp_path, "queries", work, "--record", str(record), after="schema"),
        job(tmp_path, "tests", work, "--record", str(record), after="queries"),
        job(tmp_path, "other", work, "--record", str(record)),
    ]
    assert aq("add", *map(str, files), root=root).returncode == 0
    run = aq("run", "--once", root=root, timeout=120)  # returns: nothing left that can run
    assert run.returncode == 0, run.stdout + run.stderr
    assert sorted(started_order(record)) == ["other", "schema"], "dependants never ran"
    for job_id, dependency in (("queries", "schema"), ("tests", "queries")):
        record_ = meta(root, job_id)
        assert state_of(root, job_id) == "failed"
        assert (record_["result"], record_["failed_dependency"]) == ("dependency_failed", dependency)
        assert record_.get("attempts", "0") == "0"
    explained = json.loads(aq("explain", "tests", "--json", root=root).stdout)
    assert (explained["result"], explained["failed_dependency"]) == ("dependency_failed", "queries")
    assert "the job it waits for, queries, failed" in aq("explain", "tests", root=root).stdout
    retried = aq("retry", "schema", root=root)
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.splitlines() == [
        "schema: back in inbox/",
        "queries: back in inbox/ (it failed because schema did)",
        "tests: back in inbox/ (it failed because schema did)",
    ]
    assert [state_of(root, j) for j in ("schema", "queries", "tests", "other")] == ["inbox", "inbox", "inbox", "done"]


def test_priority_first_then_oldest(tmp_path: Path) -> None:
    root, work, record = tmp_path / "q", tmp_path / "w", tmp_path / "record"
    work.mkdir()
    for job_id, priority in (("low", -1), ("plain-1", None), ("urgent", 10), ("plain-2", None), ("high", 5)):
        extra = {} if priority is None else {"priority": priority}
        path = job(tmp_path, job_id, work, "--record", str(record), **extra)
        assert aq("add", str(path), root=root).returncode == 0
        time.sleep(0.02)  # distinct add times: oldest first among equals
    assert aq("run", "--once", root=root, timeout=120).returncode == 0
    assert started_order(record) == ["urgent", "high", "plain-1", "plain-2", "low"]


def test_not_before_is_waited_for_by_run_once(tmp_path: Path) -> None:
    root, work, record = tmp_path / "q", tmp_path / "w", tmp_path / "record"
    work.mkdir()
    # Far enough ahead that add, explain and status (three aq starts) all run before it on a loaded machine.
    at = round(time.time() + 6, 3)
    later = job(tmp_path, "later", work, "--record", str(record), not_before=at)
    now = job(tmp_path, "now", work, "--record", str(record))
    assert aq("add", str(later), str(now), root=root).returncode == 0
    explained = json.loads(aq("explain", "later", "--json", root=root).stdout)
    assert {"kind": "not_before", "until": at} in explained["reasons"]
    assert "in " in [r for r in aq("status", root=root).stdout.splitlines() if r.startswith("later")][0]
    assert aq("run", "--once", root=root, timeout=120).returncode == 0
    assert started_order(record) == ["now", "later"]
    starts = {line.split()[1]: float(line.split()[3]) for line in record.read_text().splitlines()}
    assert starts["later"] >= at


@pytest.mark.parametrize("isolation", ["inplace", "worktree"])
def test_a_child_builds_on_its_parents_work(tmp_path: Path, isolation: str) -> None:
    root = tmp_path / "q"
    repo = git_repo(tmp_path / "repo", {"README.md": "hello\n"})
    parent = job(tmp_path, "parent", repo, "--write", "schema.sql=create table orders", isolation=isolation)
    child = job(tmp_path, "child", repo, "--write", "queries.py=select", after="parent", isolation=isolation)
    assert aq("add", str(parent), str(child), root=root).returncode == 0
    run = aq("run", "--once", root=root, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert [state_of(root, j) for j in ("parent", "child")] == ["done", "done"]
    parent_commit = meta(root, "parent")["wip_commit"]
    child_meta = meta(root, "child")
    assert child_meta["wip_base"] == parent_commit
    # The child's branch holds the parent's file and its own, on top of the parent's commit.
    files = git(repo, "ls-tree", "-r", "--name-only", "aq/wip/child").split()
    assert {"README.md", "schema.sql", "queries.py"} <= set(files)
    assert git(repo, "merge-base", "--is-ancestor", parent_commit, "aq/wip/child") == ""
    assert git(repo, "rev-parse", "main").strip() == git(repo, "rev-list", "--max-parents=0", "main").strip()


def test_a_child_of_two_parents_starts_from_head(tmp_path: Path) -> None:
    root = tmp_path / "q"
    repo = git_repo(tmp_path / "repo", {"README.md": "hello\n"})
    head = git(repo, "rev-parse", "HEAD").strip()
    a = job(tmp_path, "a", repo, "--write", "a.txt=a", isolation="worktree")
    b = job(tmp_path, "b", repo, "--write", "b.txt=b", isolation="worktree")
    c = job(tmp_path, "c", repo, "--write", "c.txt=c", after=["a", "b"], isolation="worktree")
    assert aq("add", str(a), str(b), str(c), root=root).returncode == 0
    assert aq("run", "--once", root=root, timeout=120).returncode == 0
    assert meta(root, "c")["wip_base"] == head


def test_explain_names_the_lock_holder_and_the_jobs_that_go_first(tmp_path: Path) -> None:
    import signal

    from helpers import start_runner, wait_running

    root, work = tmp_path / "q", tmp_path / "w"
    work.mkdir()
    gate = tmp_path / "gate"
    holder = job(tmp_path, "holder", work, "--write", f"{gate}=started", "--sleep", "60", lock="repo")
    assert aq("add", str(holder), root=root).returncode == 0
    first = job(tmp_path, "first", work)
    second = job(tmp_path, "second", work, lock="repo")
    assert aq("add", str(first), root=root).returncode == 0
    before = json.loads(aq("explain", "first", "--json", root=root).stdout)
    assert before["runnable"] is True
    assert before["reasons"] == [{"kind": "queued_behind", "ahead": ["holder"]}, {"kind": "no_runner"}]
    log = tmp_path / "runner.log"
    runner = start_runner(root, log, "--workers", "1")
    try:
        wait_running(runner, log, lambda: state_of(root, "holder") == "building" and gate.exists(), 60, "holder")
        assert aq("add", str(second), root=root).returncode == 0
        explained = json.loads(aq("explain", "second", "--json", root=root).stdout)
        assert {"kind": "lock", "lock": "repo", "held_by": "holder"} in explained["reasons"]
        assert explained["runnable"] is False
        assert "Its lock repo is held by job holder." in aq("explain", "second", root=root).stdout
        assert json.loads(aq("explain", "holder", "--json", root=root).stdout)["running"] is True
    finally:
        runner.send_signal(signal.SIGTERM)
        runner.wait(60)


def test_explain_of_an_unknown_job_is_exit_2(tmp_path: Path) -> None:
    result = aq("explain", "nobody", root=tmp_path / "q")
    assert result.returncode == 2 and result.stderr.startswith("aq: no job 'nobody'")


def test_the_dashboard_shows_what_a_job_waits_for(tmp_path: Path) -> None:
    from test_dashboard import dashboard

    root, work = tmp_path / "q", tmp_path / "w"
    work.mkdir()
    at = time.time() + 7200
    files = [job(tmp_path, "schema", work, not_before=at), job(tmp_path, "queries", work, after="schema")]
    assert aq("add", *map(str, files), root=root).returncode == 0
    with dashboard(root) as dash:
        jobs = {j["id"]: j for j in json.loads(dash.request("/api/state")[2])["jobs"]}
    assert jobs["queries"]["display"]["next"] == "after schema"
    assert jobs["queries"]["after"] == ["schema"]
    assert jobs["schema"]["display"]["next"].startswith("in 1h") or jobs["schema"]["display"]["next"].startswith(
        "in 2h"
    )
    assert jobs["schema"]["not_before"] == pytest.approx(at, abs=0.01)


def test_a_job_that_left_and_came_back_between_listings_is_read_afresh_before_its_claim(tmp_path: Path) -> None:
    import io

    from aq_core import decisions
    from aq_core.config import QueueConfig
    from aq_core.inbox import Inbox
    from aq_core.journal import Journal
    from aq_core.store import State
    from aq_core.store_fs import FsStore

    root, work = tmp_path / "q", tmp_path / "w"
    work.mkdir()
    assert aq("add", str(job(tmp_path, "x", work)), root=root).returncode == 0
    store = FsStore(root)
    inbox = Inbox(store, QueueConfig(), Journal(store, out=io.StringIO()), None)  # type: ignore[arg-type]
    assert [c.id for c in inbox.round(set())] == ["x"]
    # Another runner claims it and puts it back with a backoff, between two of this runner's looks.
    time.sleep(0.01)  # a distinct ctime
    assert store.move("x", State.INBOX, State.BUILDING)
    store.append_meta("x", {"next_eligible": time.time() + 3600, "decision": "inbox"})
    assert store.move("x", State.BUILDING, State.INBOX)
    stale = list(inbox.round(set()))  # within FULL_LISTING: names only, the kept candidate
    lock = store.coord.try_lock("job:x")
    assert lock is not None
    try:
        assert inbox.still_waiting("x") is False, "the claim would use what it knew before"
    finally:
        lock.release()
    fresh = list(inbox.round(set()))
    view = decisions.View(now=time.time())
    assert [decisions.blocked(c, view) is not False for c in fresh] == [True]
    assert stale[0].next_eligible is None and fresh[0].next_eligible is not None


def test_rounds_between_claims_keep_the_queue_order_and_see_new_and_changed_jobs(tmp_path: Path) -> None:
    import io

    from aq_core.config import QueueConfig
    from aq_core.inbox import Inbox
    from aq_core.journal import Journal
    from aq_core.store import State
    from aq_core.store_fs import FsStore

    root, work = tmp_path / "q", tmp_path / "w"
    work.mkdir()
    for name in ("a", "b", "c"):
        assert aq("add", str(job(tmp_path, name, work)), root=root).returncode == 0
        time.sleep(0.01)  # distinct add times: the queue's order is a, b, c
    store = FsStore(root)
    inbox = Inbox(store, QueueConfig(), Journal(store, out=io.StringIO()), None)  # type: ignore[arg-type]
    assert [c.id for c in inbox.round(set())] == ["a", "b", "c"]
    assert store.claim("a")
    assert [c.id for c in inbox.round({"a"})] == ["b", "c"], "the claimed job is gone, the rest in order"
    assert [c.id for c in inbox.round(set())] == ["b", "c"]
    assert aq("add", str(job(tmp_path, "d", work, priority=5)), root=root).returncode == 0
    assert [c.id for c in inbox.round(set())] == ["d", "b", "c"], "a job added between rounds is seen"
    time.sleep(0.01)  # a distinct ctime
    path = root / "inbox" / "c.md"
    path.write_text(path.read_text().replace("engine: command", "engine: command\npriority: 9"))
    inbox.listed_at = float("-inf")  # a changed file is seen at the next full listing (a stat each)
    assert [c.id for c in inbox.round(set())] == ["c", "d", "b"], "a changed file is read again"
    assert store.move("b", State.INBOX, State.FAILED)
    assert [c.id for c in inbox.round(set())] == ["c", "d"]

"""The morning review end to end: ``aq show``, ``aq diff``, ``aq report`` and pull requests (``aq pr``,
``pr: draft|ready``), on a real night of jobs in real git repositories with a local bare remote and a
stand-in GitHub CLI that records what it was asked."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import Fakes, claude_ok
from gitutil import commit_all, git, init_repo, refs
from helpers import aq, meta, state_of, stub, write_job
from morningutil import GitHub, repo_with_remote

CANARY = "CANARY-morning-7c1e5a0b93d2"
REPORT_KEYS = {"since", "until", "results", "engines", "attention", "slowest", "costliest"}


def add(root: Path, jobs: Path, job_id: str, front: dict, env: dict | None = None) -> None:
    result = aq("add", str(write_job(jobs, job_id, front, f"{CANARY}: do the {job_id} task.\n")), root=root, env=env)
    assert result.returncode == 0, result.stderr


def one_line_error(result: subprocess.CompletedProcess, code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert result.stderr.startswith("aq: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A night: a priced claude job asking for a draft pull request, a job that needed a retry, a
    crash asking for a ready pull request (so none is opened), and a job outside any repository."""
    base = tmp_path_factory.mktemp("night")
    root, jobs = base / "queue", base / "jobs"
    repo, remote = repo_with_remote(base)
    plain = base / "plain"
    plain.mkdir()
    gh = GitHub(base / "gh")
    fakes = Fakes(base)
    fakes.engine("claude", [{"lines": claude_ok(cost=0.42), "files": {"feature.txt": "one\ntwo\nthree"}}])
    env = {**fakes.env, **gh.env}
    add(root, jobs, "feature", {"engine": "claude", "cwd": str(repo), "pr": "draft"}, env)
    retry = {"max": 1, "backoff": "0s", "on": ["crash"]}
    flaky = stub("--fail-first", "1", "--write", "flaky.txt=steady now", "--print", "made it steady")
    add(root, jobs, "flaky", {"engine": "command", "cwd": str(repo), "command": flaky, "retry": retry})
    broken = stub("--write", "half.txt=half", "--print", "it broke", "--exit", "3")
    add(root, jobs, "broken", {"engine": "command", "cwd": str(repo), "command": broken, "pr": "ready"})
    lines = [arg for n in range(30) for arg in ("--print", f"line {n}")]
    add(root, jobs, "plain", {"engine": "command", "cwd": str(plain), "command": stub(*lines)})
    run = aq("run", "--once", root=root, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert CANARY not in run.stdout + run.stderr
    states = {job: state_of(root, job) for job in ("feature", "flaky", "broken", "plain")}
    assert states == {"feature": "done", "flaky": "done", "broken": "failed", "plain": "done"}
    return {"root": root, "repo": repo, "remote": remote, "gh": gh, "env": env, "run": run.stdout}


def insights(root: Path, job_id: str) -> dict:
    return json.loads(aq("insights", job_id, "--json", root=root).stdout)


# -- aq show ----------------------------------------------------------------------------------------


def test_show_puts_a_job_on_one_screen(night: dict) -> None:
    root, repo = night["root"], night["repo"]
    rec = insights(root, "flaky")
    out = aq("show", "flaky", root=root)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "state                     done" in text and "result                    ok" in text
    assert "attempts                  2" in text
    # Per attempt: the crash, then the success.
    attempt_rows = [line.split()[:3] for line in text.splitlines() if line[:2] in ("1 ", "2 ")]
    assert attempt_rows == [["1", "command", "crash"], ["2", "command", "ok"]]
    stat = git(repo, "diff", "--stat=100", "-M", rec["wip_base"], rec["wip_commit"])
    assert f"work: aq/wip/flaky {rec['wip_base'][:10]}..{rec['wip_commit'][:10]} in {repo}\n{stat}\n" in text
    assert "flaky.txt | 1 +" in text
    log = (root / "logs" / "flaky.2.log").read_text().splitlines()
    assert text.rstrip("\n").endswith("\n".join(log[-20:]))
    assert "made it steady" in text and "failure:" not in text
    assert CANARY not in text


def test_show_names_the_failure_and_tails_the_log(night: dict) -> None:
    root = night["root"]
    text = aq("show", "broken", "--log", "1", root=root).stdout
    assert "failure: crash: " in text and "exit 3" in text.split("failure: crash: ")[1].splitlines()[0]
    log = (root / "logs" / "broken.1.log").read_text().splitlines()
    assert text.rstrip("\n").splitlines()[-2:] == [
        "last 1 line of attempt 1's log (" + str(root / "logs" / "broken.1.log") + "):",
        log[-1],
    ]
    plain = aq("show", "plain", "--log", "5", root=root).stdout
    assert plain.rstrip("\n").splitlines()[-5:] == [f"line {n}" for n in range(25, 30)]
    assert "work: has no checkpoint" in plain
    assert "line 24" not in plain
    none = aq("show", "plain", "--log", "0", root=root).stdout
    assert "line 29" not in none and "log" not in none.split("work:")[1]
    for text in (plain, none):
        assert CANARY not in text


def test_show_and_diff_refuse_bad_input(night: dict) -> None:
    root = night["root"]
    one_line_error(aq("show", "nope", root=root), 2)
    one_line_error(aq("show", "flaky", "--log", "-1", root=root), 2)
    one_line_error(aq("diff", "nope", root=root), 2)


# -- aq diff ----------------------------------------------------------------------------------------


def test_diff_is_the_jobs_work_in_its_repository(night: dict) -> None:
    root, repo = night["root"], night["repo"]
    rec = insights(root, "feature")
    out = aq("diff", "feature", root=root)
    assert out.returncode == 0, out.stderr
    assert out.stdout == git(repo, "diff", "-M", rec["wip_base"], rec["wip_commit"]) + "\n"
    assert "+++ b/feature.txt" in out.stdout and "+three" in out.stdout
    stat = aq("diff", "feature", "--stat", root=root)
    assert stat.stdout == git(repo, "diff", "--stat", "-M", rec["wip_base"], rec["wip_commit"]) + "\n"
    # The work of a failed job is there too (it was checkpointed when it crashed).
    assert "+half" in aq("diff", "broken", root=root).stdout
    assert CANARY not in out.stdout + stat.stdout
    err = one_line_error(aq("diff", "plain", root=root), 1)
    assert "no checkpoint" in err


# -- aq report --------------------------------------------------------------------------------------


def test_report_json_has_the_nights_figures(night: dict) -> None:
    root = night["root"]
    out = aq("report", "--json", root=root)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert set(report) >= REPORT_KEYS
    assert report["until"] >= report["since"] and report["until"] - report["since"] == pytest.approx(86400, abs=5)
    assert report["results"] == {"ok": 3, "crash": 1}
    overview = json.loads(aq("insights", "--json", root=root).stdout)
    assert report["engines"] == overview["engines"]  # the same rows as insights --json
    by_id = {job["id"]: job for job in overview["jobs"]}
    for key in ("files_changed", "lines_added", "lines_deleted"):
        assert report["lines"][key] == sum(job[key] or 0 for job in by_id.values())
    assert report["lines"]["lines_added"] >= 5  # feature.txt's 3 lines, flaky.txt, half.txt
    attention = {(a["id"], a["kind"]): a for a in report["attention"]}
    assert set(attention) == {("broken", "failed"), ("flaky", "retried")}
    assert attention["broken", "failed"]["result"] == "crash"
    assert "exit 3" in attention["broken", "failed"]["detail"]
    assert attention["flaky", "retried"]["failures"] == ["crash"]
    assert report["costliest"] == [{"id": "feature", "cost_usd": 0.42, "estimated": False}]
    durations = sorted((-j["duration_s"], i) for i, j in by_id.items())  # equal times: by id
    assert [s["id"] for s in report["slowest"]] == [i for _, i in durations][:5]
    assert report["slowest"][0]["duration_s"] == -durations[0][0]
    assert report["pull_requests"] == [{"id": "feature", "pr_url": "https://github.com/example/project/pull/1"}]
    assert report["queue"] == {"waiting": 0, "running": 0}
    assert CANARY not in out.stdout


def test_report_window_and_bad_since(night: dict) -> None:
    root = night["root"]
    future = json.loads(aq("report", "--json", "--since", "2999-01-01", root=root).stdout)
    assert future["jobs"] == 0 and future["results"] == {} and future["attention"] == []
    err = one_line_error(aq("report", "--since", "yesterdayish", root=root), 2)
    assert "yesterdayish" in err
    one_line_error(aq("report", "--json", "--markdown", root=root), 2)


def test_report_text_and_markdown(night: dict) -> None:
    root = night["root"]
    text = aq("report", root=root).stdout
    assert "finished     4 jobs: 3 ok, 1 crash" in text
    assert "needs attention\n  broken: crash" in text and "flaky: ok after 2 attempts (crash)" in text
    assert "costliest    feature $0.42" in text
    md = aq("report", "--markdown", root=root)
    assert md.returncode == 0, md.stderr
    lines = md.stdout.splitlines()
    assert lines[0].startswith("### aq report: ")
    assert "| engine | jobs | success | tokens in | tokens out | cost | avg time |" in lines
    assert any(line.startswith("| `claude` | 1 | 100% |") and "$0.42" in line for line in lines)
    assert any(line.startswith("- `broken`: `crash`: ") for line in lines)
    assert "- `flaky`: ok after 2 attempts (`crash`)" in lines
    assert "- `feature`: <https://github.com/example/project/pull/1>" in lines
    for out in (text, md.stdout):
        assert CANARY not in out


def test_report_markdown_escapes_what_jobs_say(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    assert aq("status", root=root).returncode == 0
    (root / "inbox" / "evil.md").write_text(f'---\nengine: "<img src=x onerror=alert(1)>|`x`"\n---\n{CANARY}\n')
    assert aq("run", "--once", root=root).returncode == 0
    md = aq("report", "--markdown", root=root).stdout
    line = next(line for line in md.splitlines() if line.startswith("- `evil`"))
    assert "\\<img src=x onerror=alert(1)\\>\\|\\`x\\`" in line
    assert not re.search(r"(?<!\\)[<>|]", line.split("`: ", 1)[1])  # every markup character escaped
    assert CANARY not in md


# -- pull requests ----------------------------------------------------------------------------------


def test_a_job_with_pr_opens_its_pull_request_when_it_ends_ok(night: dict) -> None:
    root, repo, remote, gh = night["root"], night["repo"], night["remote"], night["gh"]
    rec = insights(root, "feature")
    calls = gh.calls()
    assert len(calls) == 1, calls  # `broken` asked for one too, but it failed: none for it
    call = calls[0]
    assert call["argv"] == [
        "pr", "create", "--head", "aq/wip/feature", "--title", "aq: feature", "--body-file", "-", "--draft",
    ]  # fmt: skip
    assert Path(call["cwd"]) == repo
    body = call["body"]
    stat = git(repo, "diff", "--stat=100", "-M", rec["wip_base"], rec["wip_commit"])
    assert stat in body and "feature.txt | 3 +++" in body
    assert "| result | ok |" in body and "| cost | $0.42 |" in body and "| attempts | 1 |" in body
    assert CANARY not in body and CANARY not in json.dumps(call)
    # Exactly the job's branch reached the remote, at the job's commit; main is as it was.
    assert refs(remote) == {
        "refs/heads/main": git(repo, "rev-parse", "main"),
        "refs/heads/aq/wip/feature": rec["wip_commit"],
    }
    last = meta(root, "feature")
    assert last["pr_url"] == "https://github.com/example/project/pull/1" and last["pr_requested"] == "draft"
    assert "pr_url" not in meta(root, "broken") and "pr_requested" not in meta(root, "broken")
    assert state_of(root, "feature") == "done"
    assert "pr: opened https://github.com/example/project/pull/1" in night["run"]
    assert "pr: opened" in (root / "logs" / "feature.aq.log").read_text()


@pytest.fixture
def finished(tmp_path: Path) -> dict:
    """Two finished jobs in a repository with a bare remote (no pull request asked for)."""
    repo, remote = repo_with_remote(tmp_path)
    root, jobs = tmp_path / "queue", tmp_path / "jobs"
    gh = GitHub(tmp_path / "gh")
    for job_id in ("one", "two"):
        add(root, jobs, job_id, {"engine": "command", "cwd": str(repo), "command": stub("--write", f"{job_id}.txt=x")})
    waiting = stub()
    assert aq("run", "--once", root=root).returncode == 0
    add(root, jobs, "later", {"engine": "command", "cwd": str(repo), "command": waiting})
    return {"root": root, "repo": repo, "remote": remote, "gh": gh}


def test_aq_pr_by_hand(finished: dict) -> None:
    root, remote, gh = finished["root"], finished["remote"], finished["gh"]
    out = aq("pr", "one", "--base", "main", root=root, env=gh.env)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "https://github.com/example/project/pull/1\n"
    assert CANARY not in json.dumps(gh.calls())
    assert gh.calls()[0]["argv"] == [
        "pr", "create", "--head", "aq/wip/one", "--title", "aq: one", "--body-file", "-", "--base", "main",
    ]  # fmt: skip
    assert refs(remote)["refs/heads/aq/wip/one"] == meta(root, "one")["wip_commit"]
    # Asked again: no second pull request; the branch is pushed (new commits reach the PR).
    again = aq("pr", "one", root=root, env=gh.env)
    assert again.returncode == 0 and again.stdout.startswith("https://github.com/example/project/pull/1 (already open")
    assert len(gh.calls()) == 1
    assert state_of(root, "one") == "done"


def test_a_failed_gh_call_is_one_line_and_the_job_stays_done(finished: dict) -> None:
    root, gh = finished["root"], finished["gh"]
    err = one_line_error(aq("pr", "two", root=root, env={**gh.env, "FAKE_GH_FAIL": "1"}), 1)
    assert "gh pr create exited 1: pull request create failed: GraphQL" in err
    assert meta(root, "two")["pr_error"].startswith("gh pr create exited 1")
    assert state_of(root, "two") == "done"
    log = (root / "logs" / "two.aq.log").read_text().splitlines()
    assert sum("pr: gh pr create exited 1" in line for line in log) == 1
    report = json.loads(aq("report", "--json", root=root).stdout)
    assert {"id": "two", "kind": "pr_failed"}.items() <= next(
        a for a in report["attention"] if a["id"] == "two"
    ).items()
    # GitHub CLI missing altogether.
    err = one_line_error(aq("pr", "two", root=root, env={**gh.env, "AQ_GH_BIN": "/nonexistent/gh"}), 1)
    assert "not installed" in err


def test_a_push_is_never_forced_and_pushes_nothing_else(finished: dict) -> None:
    root, repo, remote, gh = finished["root"], finished["repo"], finished["remote"], finished["gh"]
    # Someone else's commit already sits on the remote's aq/wip/two: the push is refused, not forced.
    other = init_repo(finished["root"].parent / "other", files={"x.txt": "someone else\n"})
    git(other, "push", "-q", str(remote), "HEAD:refs/heads/aq/wip/two")
    before = refs(remote)
    git(repo, "tag", "v1")
    (repo / "uncommitted.txt").write_text("local\n")
    git(repo, "checkout", "-q", "-b", "local-topic")
    commit_all(repo, "a local branch")
    err = one_line_error(aq("pr", "two", root=root, env=gh.env), 1)
    assert "git push origin aq/wip/two failed" in err and "rejected" in err
    assert refs(remote) == before  # nothing moved, no tag, no other branch
    assert gh.calls() == []
    assert state_of(root, "two") == "done"
    err = one_line_error(aq("pr", "one", "--remote", "nowhere", root=root, env=gh.env), 1)
    assert "nowhere" in err
    for option in ("--remote", "--base"):
        err = one_line_error(aq("pr", "one", f"{option}=--force", root=root, env=gh.env), 2)
        assert f"{option}: '--force'" in err
    assert refs(remote) == before


def test_aq_pr_needs_a_finished_job_with_a_checkpoint(finished: dict, tmp_path: Path) -> None:
    root, gh = finished["root"], finished["gh"]
    err = one_line_error(aq("pr", "later", root=root, env=gh.env), 1)
    assert "inbox/" in err
    one_line_error(aq("pr", "nope", root=root, env=gh.env), 2)
    plain = tmp_path / "plain"
    plain.mkdir()
    add(root, tmp_path / "jobs2", "outside", {"engine": "command", "cwd": str(plain), "command": stub()})
    aq("cancel", "later", root=root)
    assert aq("run", "--once", root=root).returncode == 0
    err = one_line_error(aq("pr", "outside", root=root, env=gh.env), 1)
    assert "no checkpoint" in err
    assert gh.calls() == []


def test_pr_key_is_validated(tmp_path: Path) -> None:
    for value in ("yes", True, "Draft"):
        path = write_job(tmp_path, "j", {"engine": "command", "command": "true", "cwd": str(tmp_path), "pr": value})
        err = one_line_error(aq("validate", str(path), root=tmp_path / "q"), 2)
        assert "pr: " in err and "expected one of draft, ready" in err
    path = write_job(tmp_path, "j", {"engine": "command", "command": "true", "cwd": str(tmp_path), "pr": "ready"})
    assert aq("validate", str(path), root=tmp_path / "q").returncode == 0


# -- the report when the queue drains --------------------------------------------------------------

NOTIFIER = """\
import json, os, sys
with open(sys.argv[1], "a") as fh:
    fh.write(json.dumps({"event": os.environ["AQ_EVENT"], "record": json.load(sys.stdin)}) + "\\n")
"""


@pytest.mark.parametrize("on", [True, False])
def test_run_once_sends_the_report_when_it_drains(tmp_path: Path, on: bool) -> None:
    root, jobs, work = tmp_path / "queue", tmp_path / "jobs", tmp_path / "work"
    work.mkdir()
    events = tmp_path / "events.jsonl"
    script = tmp_path / "notifier.py"
    script.write_text(NOTIFIER)
    root.mkdir()
    config = {"notify": [sys.executable, str(script), str(events)], "report_on_drain": on}
    (root / "config.yaml").write_text(json.dumps(config))
    add(root, jobs, "a", {"engine": "command", "cwd": str(work), "command": stub()})
    add(root, jobs, "b", {"engine": "command", "cwd": str(work), "command": stub("--exit", "2")})
    assert aq("run", "--once", root=root).returncode == 0
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert sorted(e["event"] for e in lines) == ["job_finished", "job_finished"] + (["queue_drained"] if on else [])
    if on:
        drained = next(e["record"] for e in lines if e["event"] == "queue_drained")
        assert set(drained) >= REPORT_KEYS and drained["results"] == {"ok": 1, "crash": 1}
        assert [a["id"] for a in drained["attention"]] == ["b"]
        assert drained["markdown"].startswith("### aq report: ") and "- `b`: `crash`" in drained["markdown"]
    assert CANARY not in events.read_text()
    (root / "config.yaml").write_text("report_on_drain: sometimes\n")
    err = one_line_error(aq("run", "--once", root=root), 2)
    assert "report_on_drain: 'sometimes': expected true or false" in err


def test_report_lists_paused_engines_budgets_and_failed_dependencies(tmp_path: Path) -> None:
    import time

    from aq_core import limits
    from aq_core.store_open import open_store

    root, jobs, work = tmp_path / "queue", tmp_path / "jobs", tmp_path / "work"
    work.mkdir()
    root.mkdir()
    (root / "config.yaml").write_text("budgets: {claude: 0.1}\n")
    fakes = Fakes(tmp_path)
    fakes.engine("claude", [{"lines": claude_ok(cost=0.42)}])
    add(root, jobs, "spender", {"engine": "claude", "cwd": str(work)}, fakes.env)
    assert aq("run", "--once", root=root, env=fakes.env).returncode == 0
    store = open_store(root)
    pause = limits.pause_engine(store, store.files.config(), "codex", "usage_limit", time.time() + 3600, "spender")
    # A job that failed because the job it depended on failed, as the dependency rule records it.
    (root / "failed" / "child.md").write_text(f"---\nengine: command\ncommand: 'true'\n---\n{CANARY}\n")
    lines = ["engine=command", "result=dependency_failed", "failed_dependency=spender", f"finished={time.time()}"]
    (root / "meta" / "child.meta").write_text("".join(line + "\n" for line in lines))
    report = json.loads(aq("report", "--json", root=root).stdout)
    kinds = {a["kind"]: a for a in report["attention"]}
    assert [a["kind"] for a in report["attention"]] == ["dependency_failed", "engine_paused", "budget"]
    assert kinds["dependency_failed"]["id"] == "child" and kinds["dependency_failed"]["failed_dependency"] == "spender"
    paused = kinds["engine_paused"]
    assert (paused["engine"], paused["id"], paused["result"], paused["until"]) == (
        "codex",
        "spender",
        "usage_limit",
        pause.until,
    )
    assert kinds["budget"]["engine"] == "claude" and "$0.10" in kinds["budget"]["detail"]
    text = aq("report", root=root).stdout
    assert "child: dependency_failed (its dependency spender failed)" in text
    assert "engine codex paused until " in text and "usage_limit, hit by spender" in text
    assert "engine claude: budget reached: claude's daily budget of $0.10 is spent" in text
    md = aq("report", "--markdown", root=root).stdout
    assert "- `child`: `dependency_failed` (its dependency `spender` failed)" in md
    assert CANARY not in text + md

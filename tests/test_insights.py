"""Insights end to end: per-attempt figures, totals over attempts, the per-engine rollup, filters, estimates."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fakes import CLAUDE_MODEL, Fakes, claude_ok, codex_ok
from helpers import aq, git_repo, meta, stub, write_job

KEYS = (
    "id", "state", "engine", "result", "attempts", "duration_s", "exit", "files_changed", "lines_added",
    "lines_deleted", "model", "tokens_in", "tokens_out", "tokens_cached", "cost_usd", "turns", "tool_calls",
    "estimated", "wip_branch", "wip_base", "wip_commit", "runs",
)  # fmt: skip
ENGINE_KEYS = (
    "engine", "jobs", "succeeded", "failed", "success_rate", "tokens_in", "tokens_out", "tokens_cached",
    "cost_usd", "cost_estimated", "avg_duration_s",
)  # fmt: skip


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "queue"


def add(root: Path, tmp_path: Path, job_id: str, front: dict, env: dict | None = None, prompt: str = "Go.\n") -> None:
    result = aq("add", str(write_job(tmp_path / "jobs", job_id, front, prompt)), root=root, env=env)
    assert result.returncode == 0, result.stderr


def test_a_retried_job_costs_all_its_attempts(root: Path, tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo")
    fakes = Fakes(tmp_path)
    fakes.engine(
        "claude",
        [
            {"lines": claude_ok(cost=0.25), "exit": 1, "files": {"a.txt": "one"}},
            {"lines": claude_ok(cost=0.5), "files": {"b.txt": "two\nlines"}},
        ],
    )
    front = {"engine": "claude", "cwd": str(repo), "retry": {"max": 1, "backoff": "0s", "on": ["crash"]}}
    add(root, tmp_path, "twice", front, fakes.env)
    assert aq("run", "--once", root=root, env=fakes.env).returncode == 0
    record = json.loads(aq("insights", "twice", "--json", root=root).stdout)
    assert set(KEYS) <= set(record)
    assert (record["state"], record["result"], record["attempts"], record["engine"]) == ("done", "ok", 2, "claude")
    assert record["cost_usd"] == pytest.approx(0.75)
    # Each of claude's results here reports 1060 tokens in (10 + 50 written + 1000 read) and 100 out.
    assert (record["tokens_in"], record["tokens_out"], record["tokens_cached"]) == (2120, 200, 2000)
    assert record["turns"] == 4 and record["model"] == CLAUDE_MODEL
    assert record["estimated"] == []
    assert (record["files_changed"], record["lines_added"], record["lines_deleted"]) == (2, 3, 0)
    assert record["wip_branch"] == "aq/wip/twice" and len(record["wip_commit"]) == 40
    runs = record["runs"]
    assert [r["attempt"] for r in runs] == [1, 2]
    assert [r["result"] for r in runs] == ["crash", "ok"]
    assert [r["exit"] for r in runs] == [1, 0]
    assert [r["cost_usd"] for r in runs] == [0.25, 0.5]
    assert all(r["duration_s"] >= 0 and r["tokens_in"] == 1060 for r in runs)
    text = aq("insights", "twice", root=root).stdout
    assert "ATTEMPT" in text and "$0.75" in text and "aq/wip/twice" in text


def test_overview_table_rollup_and_filters(root: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    fakes = Fakes(tmp_path)
    fakes.engine("claude", [{"lines": claude_ok(cost=0.1)}])
    fakes.engine("codex", [{"lines": codex_ok()}])
    add(root, tmp_path, "c1", {"engine": "claude", "cwd": str(work)}, fakes.env)
    add(root, tmp_path, "c2", {"engine": "claude", "cwd": str(work), "verify": "false"}, fakes.env)
    add(root, tmp_path, "x1", {"engine": "codex", "cwd": str(work), "model": "gpt-5"}, fakes.env)
    add(root, tmp_path, "s1", {"engine": "command", "cwd": str(work), "command": stub()}, fakes.env)
    assert aq("run", "--once", root=root, env=fakes.env).returncode == 0
    data = json.loads(aq("insights", "--json", root=root).stdout)
    assert {j["id"] for j in data["jobs"]} == {"c1", "c2", "x1", "s1"}
    assert all("runs" not in j for j in data["jobs"])
    engines = {e["engine"]: e for e in data["engines"]}
    for row in engines.values():
        assert set(ENGINE_KEYS) <= set(row)
    claude = engines["claude"]
    assert (claude["jobs"], claude["succeeded"], claude["failed"], claude["success_rate"]) == (2, 1, 1, 0.5)
    assert claude["cost_usd"] == pytest.approx(0.2) and claude["cost_estimated"] is False
    codex = engines["codex"]
    # Codex prints no cost; the model is the one aq passed; the cost is estimated and marked.
    assert codex["tokens_in"] == 2000 and codex["cost_estimated"] is True
    x1 = next(j for j in data["jobs"] if j["id"] == "x1")
    assert x1["model"] == "gpt-5" and x1["estimated"] == ["cost_usd"] and x1["cost_usd"] > 0
    assert engines["command"]["tokens_in"] is None and engines["command"]["cost_usd"] is None
    text = aq("insights", root=root).stdout
    assert "per engine" in text and "*" in text and "estimated" in text
    only = json.loads(aq("insights", "--json", "--engine", "codex", root=root).stdout)
    assert [j["id"] for j in only["jobs"]] == ["x1"]
    future = json.loads(aq("insights", "--json", "--since", "2999-01-01", root=root).stdout)
    assert future["jobs"] == [] and future["engines"] == []
    recent = json.loads(aq("insights", "--json", "--since", "1h", root=root).stdout)
    assert len(recent["jobs"]) == 4
    bad = aq("insights", "--since", "yesterdayish", root=root)
    assert bad.returncode == 2 and "--since" in bad.stderr


def test_status_sub_line_shows_insights(root: Path, tmp_path: Path) -> None:
    work = git_repo(tmp_path / "repo")
    fakes = Fakes(tmp_path)
    fakes.engine("claude", [{"lines": claude_ok(cost=0.42), "files": {"new.txt": "a\nb\nc"}}])
    add(root, tmp_path, "sub", {"engine": "claude", "cwd": str(work)}, fakes.env)
    assert aq("run", "--once", root=root, env=fakes.env).returncode == 0
    lines = aq("status", root=root).stdout.splitlines()
    sub = next(line for line in lines if line.strip().startswith("└"))
    assert "1 attempt" in sub and "1.1k in / 100 out" in sub and "$0.42" in sub and "+3/-0" in sub


def test_secrets_in_the_environment_are_never_written(root: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    secret = "sk-ant-SECRET-canary-5f1e2d"
    env = {"ANTHROPIC_API_KEY": secret, "GITHUB_TOKEN": secret + "-gh"}
    add(root, tmp_path, "quiet", {"engine": "command", "cwd": str(work), "command": stub()}, env)
    run = aq("run", "--once", root=root, env=env)
    assert secret not in run.stdout + run.stderr
    outputs = [
        aq(*cmd, root=root, env=env).stdout
        for cmd in (
            ["status"],
            ["status", "--json"],
            ["insights"],
            ["insights", "--json"],
            ["insights", "quiet", "--json"],
        )
    ]
    assert all(secret not in out for out in outputs)
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            if path.parent.name == "logs" and not name.endswith(".aq.log"):
                continue  # the engine's own output is the engine's
            assert secret.encode() not in path.read_bytes(), f"{path} holds a secret"
    assert meta(root, "quiet")["result"] == "ok"


def test_fallback_spend_is_credited_to_the_engine_that_spent_it(root: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    (root).mkdir(mode=0o700)
    (root / "config.yaml").write_text("limit_margin: 0\n")
    fakes = Fakes(tmp_path)
    limited = claude_ok(cost=0.03)[:1] + [
        claude_ok(cost=0.03)[1]
        .replace('"is_error":false', '"is_error":true')
        .replace('"result":"done"', '"result":"You\'ve hit your limit · resets 2pm (UTC)"')
    ]
    fakes.engine("claude", [{"lines": limited, "exit": 1}])
    fakes.engine("codex", [{"lines": codex_ok()}])
    add(root, tmp_path, "both", {"engine": ["claude", "codex"], "cwd": str(work)}, fakes.env)
    assert aq("run", "--once", root=root, env=fakes.env).returncode == 0
    record = json.loads(aq("insights", "both", "--json", root=root).stdout)
    assert [r["engine"] for r in record["runs"]] == ["claude", "codex"]
    assert record["engines"] == ["claude", "codex"] and record["engine"] == "codex"
    engines = {e["engine"]: e for e in json.loads(aq("insights", "--json", root=root).stdout)["engines"]}
    assert engines["claude"]["jobs"] == 0 and engines["claude"]["cost_usd"] == pytest.approx(0.03)
    assert engines["codex"]["jobs"] == 1 and engines["codex"]["tokens_in"] == 2000


def test_overview_table_shows_every_column_from_a_warm_cache(root: Path, tmp_path: Path) -> None:
    work = git_repo(tmp_path / "repo")
    fakes = Fakes(tmp_path)
    fakes.engine("claude", [{"lines": claude_ok(cost=0.42), "files": {"new.txt": "a\nb"}}])
    add(root, tmp_path, "cols", {"engine": "claude", "cwd": str(work)}, fakes.env)
    assert aq("run", "--once", root=root, env=fakes.env).returncode == 0
    for _ in range(2):  # the second read comes from the rows cache
        line = next(x for x in aq("insights", root=root).stdout.splitlines() if x.startswith("cols"))
        assert "1.1k" in line and "$0.42" in line and "+2/-0" in line, line

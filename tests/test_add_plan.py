"""``aq add`` of a plan: after: ids checked against the queue and the call, cycles refused whole, --prompt."""

from __future__ import annotations

from pathlib import Path

from helpers import aq, meta, state_of, stub, write_job


def job(folder: Path, job_id: str, **front) -> Path:
    return write_job(folder, job_id, {"engine": "command", "command": stub(), "cwd": str(folder), **front})


def test_unknown_after_id_is_refused_naming_it(tmp_path: Path) -> None:
    root = tmp_path / "q"
    path = job(tmp_path, "queries", after=["schema", "nowhere"])
    schema = job(tmp_path, "schema")
    result = aq("add", str(schema), str(path), root=root)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"aq: {path}: after: 'nowhere' is not a job in the queue or in this add"
    ]
    assert result.stdout.split() == ["schema"]
    assert state_of(root, "queries") is None and state_of(root, "schema") == "inbox"
    # Once schema is in the queue, a later add may name it.
    ok = job(tmp_path, "tests", after="schema", priority=3, not_before=1893553445)
    assert aq("add", str(ok), root=root).stdout.split() == ["tests"]
    record = meta(root, "tests")
    assert (record["after"], record["priority"], record["not_before"]) == ("schema", "3", "1893553445.0")


def test_a_cycle_is_refused_naming_it_and_none_of_its_jobs_is_queued(tmp_path: Path) -> None:
    root = tmp_path / "q"
    ping = job(tmp_path, "ping", after="pong")
    pong = job(tmp_path, "pong", after="ping")
    tail = job(tmp_path, "tail", after="pong")
    alone = job(tmp_path, "alone")
    result = aq("add", str(ping), str(pong), str(tail), str(alone), root=root)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert f"aq: {ping}: after: cycle ping -> pong -> ping" in lines
    assert f"aq: {pong}: after: cycle ping -> pong -> ping" in lines
    assert f"aq: {tail}: after: 'pong' is not a job in the queue or in this add" in lines
    assert result.stdout.split() == ["alone"]
    assert [state_of(root, j) for j in ("ping", "pong", "tail")] == [None, None, None]
    selfish = job(tmp_path, "selfish", after="selfish")
    result = aq("add", str(selfish), root=root)
    assert result.returncode == 2 and "after: cycle selfish -> selfish" in result.stderr


def test_bad_plan_values_exit_2_one_line_each(tmp_path: Path) -> None:
    root = tmp_path / "q"
    path = job(tmp_path, "bad", priority="high", not_before="someday", profile="nope")
    result = aq("add", str(path), root=root)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"aq: {path}: profile: 'nope': no such profile (profiles: none (add profiles: to the queue's config.yaml))",
        f"aq: {path}: priority: 'high': expected a whole number (higher runs first; default 0)",
        f"aq: {path}: not_before: 'someday': expected an ISO 8601 date-time (2026-12-06T02:00, with or without an offset) or epoch seconds",
    ]
    assert state_of(root, "bad") is None


def test_add_prompt_queues_a_job_without_a_file(tmp_path: Path) -> None:
    root = tmp_path / "q"
    root.mkdir()
    (root / "config.yaml").write_text(
        f"profiles:\n  stub:\n    engine: command\n    command: {stub()!r}\n    priority: 2\n"
    )
    secret = "Fix the login bug quickly, canary-5d1e"
    result = aq("add", "--prompt", secret, "--profile", "stub", "--cwd", str(tmp_path), root=root)
    assert result.returncode == 0, result.stderr
    (job_id,) = result.stdout.split()
    assert job_id.startswith("fix-the-login-bug-quickly-canary-") and len(job_id) <= 48
    assert state_of(root, job_id) == "inbox"
    assert (root / "inbox" / f"{job_id}.md").read_text().endswith(secret + "\n")
    assert secret not in (root / "meta" / f"{job_id}.meta").read_text()
    assert meta(root, job_id)["priority"] == "2" and meta(root, job_id)["profile"] == "stub"
    bare = aq("add", "--prompt", "x", "--engine", "command", "--id", "bare", root=root)
    assert bare.returncode == 2 and "bare.md: command: required when engine is 'command'" in bare.stderr


def test_add_prompt_from_stdin_and_without_engine(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = tmp_path / "q"
    root.mkdir()
    (root / "config.yaml").write_text("profiles:\n  quick: {timeout: 5m}\n")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "aq_core",
            "--root",
            str(root),
            "add",
            "--prompt",
            "-",
            "--engine",
            "claude",
            "--id",
            "p1",
        ],
        input="Write the tests.\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["p1"]
    assert (root / "inbox" / "p1.md").read_text().endswith("Write the tests.\n")
    none = aq("add", "--prompt", "do it", "--profile", "quick", root=root)
    assert none.returncode == 2
    assert none.stderr.strip() == "aq: aq add --prompt: no engine: give --engine NAME or a --profile that sets engine:"
    unknown = aq("add", "--prompt", "do it", "--profile", "slow", "--engine", "claude", root=root)
    assert unknown.returncode == 2 and "profile: 'slow': no such profile (profiles: quick)" in unknown.stderr


def test_parents_are_queued_before_their_children(tmp_path: Path) -> None:
    root = tmp_path / "q"
    files = [job(tmp_path, "c", after="b"), job(tmp_path, "b", after="a"), job(tmp_path, "a"), job(tmp_path, "z")]
    result = aq("add", *map(str, files), root=root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["a", "b", "c", "z"]
    added = [float(meta(root, j)["added"]) for j in ("a", "b", "c")]
    assert added == sorted(added)


def test_a_profile_with_bad_keys_is_reported_one_line_per_problem_and_nothing_is_queued(tmp_path: Path) -> None:
    root = tmp_path / "q"
    root.mkdir()
    (root / "config.yaml").write_text(
        "profiles:\n  night:\n    engine: command\n    priority: urgent\n    timout: 5m\n"
    )
    path = job(tmp_path, "a", profile="night")
    result = aq("add", str(path), root=root)
    assert result.returncode == 2
    config = root / "config.yaml"
    assert result.stderr.strip().splitlines() == [
        f"aq: {config}: profiles.night: unknown key 'timout' (did you mean 'timeout'?)",
        f"aq: {config}: profiles.night: priority: 'urgent': expected a whole number (higher runs first; default 0)",
    ]
    assert state_of(root, "a") is None

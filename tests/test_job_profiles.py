"""The plan keys (after, priority, not_before) and profiles: validated like every job key, job keys win whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from aq_core.config import load_config
from aq_core.errors import JobInvalid, UsageError
from aq_core.job import parse_job

ENGINES = ["claude", "codex", "command"]


def parse(tmp_path: Path, text: str, profiles=None):
    path = tmp_path / "job.md"
    path.write_text(text)
    return parse_job(path, text.encode(), engines=ENGINES, default_cwd=tmp_path, profiles=profiles)


def problems(tmp_path: Path, text: str, profiles=None) -> list[str]:
    with pytest.raises(JobInvalid) as info:
        parse(tmp_path, text, profiles)
    return info.value.problems


def test_plan_keys_parse(tmp_path: Path) -> None:
    job = parse(
        tmp_path,
        "---\nengine: claude\nafter: [schema, queries]\npriority: -3\nnot_before: 2030-01-02T03:04:05+00:00\n---\nGo.\n",
    )
    assert job.after == ("schema", "queries")
    assert job.priority == -3
    assert job.not_before == 1893553445.0
    single = parse(tmp_path, "---\nengine: claude\nafter: schema\nnot_before: 1893553445\n---\nGo.\n")
    assert single.after == ("schema",) and single.not_before == 1893553445.0 and single.priority == 0


@pytest.mark.parametrize(
    ("line", "key", "value"),
    [
        ("priority: high", "priority", "'high'"),
        ("priority: 1.5", "priority", "1.5"),
        ("priority: true", "priority", "True"),
        ("not_before: tomorrow-ish", "not_before", "'tomorrow-ish'"),
        ("not_before: 2026-13-45T99:00", "not_before", "'2026-13-45T99:00'"),
        ("after: ../etc", "after", "'../etc'"),
        ("after: []", "after", "[]"),
        ("profile: [a]", "profile", "['a']"),
    ],
)
def test_bad_plan_keys_name_file_key_and_value(tmp_path: Path, line: str, key: str, value: str) -> None:
    found = problems(tmp_path, f"---\nengine: claude\n{line}\n---\nGo.\n")
    assert len(found) == 1, found
    assert found[0].startswith(f"{tmp_path / 'job.md'}: {key}: {value}"), found


def write_config(root: Path, text: str) -> None:
    root.mkdir(exist_ok=True)
    (root / "config.yaml").write_text(text)


def test_profile_keys_start_a_job_and_job_keys_win_whole(tmp_path: Path) -> None:
    write_config(
        tmp_path,
        "profiles:\n  night:\n    engine: codex\n    timeout: 2h\n    priority: 5\n    sandbox: true\n"
        "    stall_timeout: 10m\n    pr: draft\n    retry: {max: 3, backoff: 1m, on: [timeout, crash]}\n",
    )
    profiles = load_config(tmp_path).profiles
    job = parse(tmp_path, "---\nprofile: night\nretry: {max: 1}\n---\nGo.\n", profiles)
    assert job.engine == "codex" and job.timeout == 7200 and job.priority == 5 and job.profile == "night"
    assert (job.sandbox, job.stall_timeout, job.pr) == (True, 600, "draft")
    assert job.retry.max == 1 and job.retry.backoff != 60, "the job's retry mapping replaces the profile's whole"
    own = parse(tmp_path, "---\nprofile: night\nengine: claude\npriority: 0\n---\nGo.\n", profiles)
    assert own.engine == "claude" and own.priority == 0 and own.retry.max == 3


def test_unknown_profile_names_it_and_the_ones_that_exist(tmp_path: Path) -> None:
    write_config(tmp_path, "profiles:\n  night: {engine: codex}\n  quick: {engine: claude}\n")
    found = problems(tmp_path, "---\nprofile: nigth\n---\nGo.\n", load_config(tmp_path).profiles)
    assert found[0] == f"{tmp_path / 'job.md'}: profile: 'nigth': no such profile (profiles: night, quick)"


def test_profile_with_bad_keys_is_refused_with_the_job_errors(tmp_path: Path) -> None:
    write_config(tmp_path, "profiles:\n  night:\n    engine: codex\n    timeout: soon\n    priorty: 3\n    after: x\n")
    with pytest.raises(UsageError) as info:
        load_config(tmp_path)
    message = str(info.value)
    config = tmp_path / "config.yaml"
    assert f"{config}: profiles.night: timeout: 'soon'" in message
    assert f"{config}: profiles.night: unknown key 'priorty' (did you mean 'priority'?)" in message
    assert f"{config}: profiles.night: key 'after' is not allowed here (only in a job file)" in message


def test_profile_engine_is_checked_against_the_installed_engines(tmp_path: Path) -> None:
    write_config(tmp_path, "profiles:\n  night: {engine: clade}\n")
    found = problems(tmp_path, "---\nprofile: night\n---\nGo.\n", load_config(tmp_path).profiles)
    assert found == [
        "config.yaml: profiles.night: engine: 'clade' is not installed (installed: claude, codex, command) (did you mean 'claude'?)"
    ]

"""Job files: every problem named with the file, the key and the bad value, all in one run."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import aq, state_of

from aq_core.durations import parse_duration
from aq_core.errors import JobInvalid
from aq_core.job import parse_job

ENGINES = ["claude", "codex", "command"]


def parse(tmp_path: Path, text: str | bytes, name: str = "job.md", **kw):
    path = tmp_path / name
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(data)
    return parse_job(path, data, engines=kw.pop("engines", ENGINES), default_cwd=tmp_path, **kw)


def problems(tmp_path: Path, text: str | bytes, name: str = "job.md") -> list[str]:
    with pytest.raises(JobInvalid) as info:
        parse(tmp_path, text, name)
    for problem in info.value.problems:
        assert "\n" not in problem
        assert str(tmp_path / name) in problem, "every error names the file"
    return info.value.problems


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(90, 90), ("90", 90), ("90s", 90), ("5m", 300), ("4h", 14400), ("1h30m", 5400), ("2d", 172800), ("1.5h", 5400)],
)
def test_durations(text, seconds) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5 minutes", "-5m", "1x", "m5", "abc", "1h-30m", True, None, [1]])
def test_bad_durations(text) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_full_job_parses(tmp_path: Path) -> None:
    job = parse(
        tmp_path,
        f"---\nengine: claude\ncwd: {tmp_path}\ntimeout: 4h\nlock: repo\nyolo: true\nmodel: sonnet\n"
        "verify: pytest -q\nretry:\n  max: 2\n  backoff: 5m\n  on: [timeout, verify_failed, crash]\n---\nThe prompt.\n",
    )
    assert job.id == "job" and job.engine == "claude" and job.cwd == tmp_path
    assert (job.timeout, job.lock, job.yolo, job.model, job.verify) == (14400, "repo", True, "sonnet", "pytest -q")
    assert (job.retry.max, job.retry.backoff, job.retry.on) == (2, 300, ("timeout", "verify_failed", "crash"))
    assert job.prompt == "The prompt.\n"
    assert "The prompt" not in repr(job), "the prompt never shows in a repr (logs, tracebacks)"


def test_mistyped_key_suggests_the_near_spelling(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, "---\nengine: claude\ntiemout: 5m\n---\nx\n")
    assert "unknown key 'tiemout'" in problem and "did you mean 'timeout'?" in problem


def test_unknown_engine_lists_installed(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, "---\nengine: nosuchengine\n---\nx\n")
    assert "engine: 'nosuchengine' is not installed (installed: claude, codex, command)" in problem


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "---\nengine: claud\ntimeout: soon\nyolo: yes please\nretry:\n  max: -1\n  on: [crsh]\nisolation: sandbox\n"
        "cwd: /no/such/dir\nmodle: x\n---\n\n",
    )
    text = "\n".join(found)
    for needle in (
        "engine: 'claud' is not installed",
        "did you mean 'claude'",
        "timeout: 'soon'",
        "yolo:",
        "retry.max: -1",
        "unknown failure class 'crsh'",
        "did you mean 'crash'",
        "isolation: 'sandbox'",
        "cwd: '/no/such/dir': no such directory",
        "unknown key 'modle'",
        "prompt",
    ):
        assert needle in text, f"missing {needle!r} in {found}"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"", "empty file"),
        (b"   \n\n", "empty file"),
        (b"\x00\x01binary\xff", "binary"),
        (b"\xff\xfe\xfa not utf8", "not UTF-8"),
        (b"no frontmatter here\n", "no YAML frontmatter"),
        (b"---\nengine: [unclosed\n---\nx\n", "not valid YAML"),
        (b"---\n- a list\n---\nx\n", "must be a mapping"),
        (b"---\n---\nx\n", "engine: missing"),
        (b"---\nengine: command\n---\nx\n", "command: required"),
        (b"---\nengine: claude\ntimeout: 0\n---\nx\n", "must be more than zero"),
        (b"---\nengine: claude\nlock: [a]\n---\nx\n", "lock: ['a']: expected a non-empty string"),
        (b"---\nengine: claude\nretry: 3\n---\nx\n", "retry: 3: expected a mapping"),
        (b"---\nengine: claude\nmax_cost_usd: -1\n---\nx\n", "max_cost_usd"),
    ],
)
def test_bad_files(tmp_path: Path, content: bytes, needle: str) -> None:
    found = problems(tmp_path, content)
    assert any(needle in p for p in found), found


@pytest.mark.parametrize("name", ["-dash.md", ".hidden.md", "sp ace.md", "ünï.md", "a" * 130 + ".md"])
def test_bad_ids(tmp_path: Path, name: str) -> None:
    found = problems(tmp_path, "---\nengine: claude\n---\nx\n", name=name)
    assert any("bad job id" in p for p in found)


def test_relative_cwd_resolves_against_where_aq_add_ran(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    job = parse(tmp_path, "---\nengine: claude\ncwd: sub\n---\nx\n")
    assert job.cwd == tmp_path / "sub"


def test_cli_validate_and_add_report_everything_and_exit_2(tmp_path: Path) -> None:
    root = tmp_path / "q"
    bad = tmp_path / "bad.md"
    bad.write_text("---\nengine: nosuchengine\ntiemout: 5m\ntimeout: forever\n---\nx\n")
    good = tmp_path / "good.md"
    good.write_text(f"---\nengine: command\ncommand: 'true'\ncwd: {tmp_path}\n---\nGo.\n")
    result = aq("validate", str(bad), str(good), root=root)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("aq: ") for line in lines)
    assert "Traceback" not in result.stderr
    assert "good.md: ok" in result.stdout
    added = aq("add", str(bad), str(good), root=root)
    assert added.returncode == 2
    assert added.stdout.strip() == "good"
    assert state_of(root, "good") == "inbox" and state_of(root, "bad") is None
    assert bad.exists(), "an invalid file is never deleted"


def test_cli_add_refuses_a_duplicate_id(tmp_path: Path) -> None:
    root = tmp_path / "q"
    good = tmp_path / "dup.md"
    good.write_text(f"---\nengine: command\ncommand: 'true'\ncwd: {tmp_path}\n---\nGo.\n")
    assert aq("add", str(good), root=root).returncode == 0
    again = aq("add", str(good), root=root)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_cli_missing_file_and_bad_usage(tmp_path: Path) -> None:
    root = tmp_path / "q"
    missing = aq("add", str(tmp_path / "nope.md"), root=root)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    usage = aq("run", "--workers", "many", root=root)
    assert usage.returncode == 2 and usage.stderr.startswith("aq: ") and usage.stderr.count("\n") == 1
    unknown = aq("frobnicate", root=root)
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert aq("--version", root=root).stdout.startswith("aq ")

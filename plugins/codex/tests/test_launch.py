"""The exact `codex exec` command lines aq starts, checked against the real CLI's --help (codex-cli 0.171.0)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from aq_codex.argv import CONTINUE_PROMPT

from aq_core import plugins
from aq_core.engine import LaunchContext
from aq_core.errors import AqError
from aq_core.testing import CANARY, make_job

EXE = "/opt/codex/bin/codex"
TID = "019f9f3b-baa5-7412-a501-658c0f1e1cf2"
HELP = Path(__file__).parent / "cli_help"


def ctx(tmp_path: Path, session_id: str | None = None, executable: str | None = EXE, **job) -> LaunchContext:
    return LaunchContext(
        job=make_job("codex", tmp_path, **job),
        attempt=2 if session_id else 1,
        executable=executable,
        workdir=tmp_path,
        prompt_file=tmp_path / "prompt.md",
        session_id=session_id,
    )


CASES = {
    "default": (
        {},
        None,
        [EXE, "exec", "--json", "--skip-git-repo-check", "--sandbox", "workspace-write", "--", "-"],
    ),
    "model": (
        {"model": "gpt-5.6-sol"},
        None,
        [
            EXE,
            "exec",
            "--json",
            "--skip-git-repo-check",
            "--sandbox",
            "workspace-write",
            "-m",
            "gpt-5.6-sol",
            "--",
            "-",
        ],
    ),
    "yolo": (
        {"yolo": True},
        None,
        [EXE, "exec", "--json", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox", "--", "-"],
    ),
    "yolo+model": (
        {"yolo": True, "model": "gpt-5.6-sol"},
        None,
        [
            EXE,
            "exec",
            "--json",
            "--skip-git-repo-check",
            "--dangerously-bypass-approvals-and-sandbox",
            "-m",
            "gpt-5.6-sol",
            "--",
            "-",
        ],
    ),
    "resume": (
        {},
        TID,
        [
            EXE,
            "exec",
            "resume",
            "--json",
            "--skip-git-repo-check",
            "-c",
            'sandbox_mode="workspace-write"',
            "--",
            TID,
            "-",
        ],
    ),
    "resume+yolo+model": (
        {"yolo": True, "model": "gpt-5.6-sol"},
        TID,
        [
            EXE,
            "exec",
            "resume",
            "--json",
            "--skip-git-repo-check",
            "--dangerously-bypass-approvals-and-sandbox",
            "-m",
            "gpt-5.6-sol",
            "--",
            TID,
            "-",
        ],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_exact_argv(tmp_path: Path, case: str) -> None:
    job, session, argv = CASES[case]
    spec = plugins.launch("codex", ctx(tmp_path, session, **job))
    assert spec.argv == argv
    assert spec.prompt == "stdin"
    assert spec.env == {}
    assert spec.prompt_text == (CONTINUE_PROMPT if session else None)
    assert all(CANARY not in arg for arg in spec.argv)


def _options(help_text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])(-[A-Za-z]|--[a-z][a-z-]+)\b", help_text))


@pytest.mark.parametrize("case", list(CASES))
def test_every_flag_is_in_the_real_help(tmp_path: Path, case: str) -> None:
    job, session, argv = CASES[case]
    name = "codex-0.171.0-exec-resume.txt" if session else "codex-0.171.0-exec.txt"
    known = _options((HELP / name).read_text())
    flags = [arg for arg in argv[2:] if arg.startswith("-") and arg not in ("-", "--")]
    assert flags and set(flags) <= known, f"not in `codex exec{' resume' if session else ''} --help`: {flags}"


def test_help_says_dash_reads_stdin() -> None:
    assert "(or if `-` is used), instructions are read from stdin" in " ".join(
        (HELP / "codex-0.171.0-exec.txt").read_text().split()
    )
    assert "If `-` is used, read from stdin" in (HELP / "codex-0.171.0-exec-resume.txt").read_text()


def test_full_auto_is_gone_in_0171() -> None:
    # --full-auto was removed; `exec resume` has no --sandbox at all (hence -c sandbox_mode=...).
    assert "--full-auto" not in (HELP / "codex-0.171.0-exec.txt").read_text()
    assert "--sandbox" not in (HELP / "codex-0.171.0-exec-resume.txt").read_text()


@pytest.mark.parametrize("bad", ["--last", "a b", "", "-x", "x" * 200, "id;rm -rf /"])
def test_a_session_id_that_is_no_id_starts_fresh(tmp_path: Path, bad: str) -> None:
    spec = plugins.launch("codex", ctx(tmp_path, bad))
    assert spec.argv[:3] == [EXE, "exec", "--json"]
    assert spec.prompt_text is None


def test_thread_name_is_resumed(tmp_path: Path) -> None:
    spec = plugins.launch("codex", ctx(tmp_path, "nightly-refactor.2"))
    assert spec.argv[-3:] == ["--", "nightly-refactor.2", "-"]


def test_not_installed_names_the_override(tmp_path: Path) -> None:
    with pytest.raises(AqError) as info:
        plugins.launch("codex", ctx(tmp_path, executable=None))
    message = str(info.value)
    assert "AQ_CODEX_BIN" in message and "codex" in message and "\n" not in message


def test_other_engines_get_no_answer(tmp_path: Path) -> None:
    from aq_codex import launch

    c = ctx(tmp_path)
    assert launch(engine="claude", ctx=replace(c, job=replace(c.job, engines=("claude",)))) is None

"""The exact `gemini` command lines aq starts, checked against the real CLI's --help (Gemini CLI 0.61.0)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aq_gemini.argv import CONTINUE_PROMPT

from aq_core import plugins
from aq_core.engine import LaunchContext
from aq_core.errors import AqError
from aq_core.testing import CANARY, make_job

EXE = "/opt/gemini/bin/gemini"
SID = "327ac130-33f2-4262-89bf-38b4a11ea782"
HELP = (Path(__file__).parent / "cli_help" / "gemini-0.61.0-help.txt").read_text()


def ctx(tmp_path: Path, session_id: str | None = None, executable: str | None = EXE, **job) -> LaunchContext:
    return LaunchContext(
        job=make_job("gemini", tmp_path, **job),
        attempt=2 if session_id else 1,
        executable=executable,
        workdir=tmp_path,
        prompt_file=tmp_path / "prompt.md",
        session_id=session_id,
    )


BASE = [EXE, "-o", "stream-json", "--skip-trust"]
CASES = {
    "plain": ({}, None, BASE),
    "yolo": ({"yolo": True}, None, [*BASE, "--approval-mode", "yolo"]),
    "model": ({"model": "gemini-2.5-pro"}, None, [*BASE, "-m", "gemini-2.5-pro"]),
    "resume": ({}, SID, [*BASE, "--resume", SID]),
    "all": (
        {"yolo": True, "model": "gemini-2.5-flash"},
        SID,
        [*BASE, "--approval-mode", "yolo", "-m", "gemini-2.5-flash", "--resume", SID],
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_argv(tmp_path: Path, name: str) -> None:
    job, session, argv = CASES[name]
    spec = plugins.launch("gemini", ctx(tmp_path, session, **job))
    assert spec.argv == argv
    assert spec.prompt == "stdin"
    assert spec.env == {"GEMINI_CLI_NO_RELAUNCH": "true"}
    assert spec.prompt_text == (CONTINUE_PROMPT if session else None)
    assert CANARY not in " ".join(spec.argv)


def test_every_flag_is_in_the_real_help() -> None:
    for flag in ("-o, --output-format", "--skip-trust", "--approval-mode", "-m, --model", "-r, --resume"):
        assert flag in HELP, flag
    assert re.search(r'--output-format.*choices: "text", "json", "stream-json"', HELP)
    assert re.search(r'--approval-mode.*"yolo"', HELP)


@pytest.mark.parametrize("session", ["latest", "5", "-x", "", "not a uuid"])
def test_only_a_session_uuid_is_resumed(tmp_path: Path, session: str) -> None:
    spec = plugins.launch("gemini", ctx(tmp_path, session))
    assert "--resume" not in spec.argv and spec.prompt_text is None


def test_missing_executable_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AqError, match="install @google/gemini-cli or set AQ_GEMINI_BIN"):
        plugins.launch("gemini", ctx(tmp_path, executable=None))

"""The exact `qwen` command lines aq starts, checked against the real CLI's --help (Qwen Code 0.24.4)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aq_qwen.argv import CONTINUE_PROMPT

from aq_core import plugins
from aq_core.engine import LaunchContext
from aq_core.errors import AqError
from aq_core.testing import CANARY, make_job

EXE = "/opt/qwen/bin/qwen"
SID = "a609bd03-0b7f-4c7b-add8-eec5d75a9ba5"
HELP = (Path(__file__).parent / "cli_help" / "qwen-0.24.4-help.txt").read_text()


def ctx(
    tmp_path: Path, session_id: str | None = None, executable: str | None = EXE, settings=None, **job
) -> LaunchContext:
    return LaunchContext(
        job=make_job("qwen", tmp_path, **job),
        attempt=2 if session_id else 1,
        executable=executable,
        workdir=tmp_path,
        prompt_file=tmp_path / "prompt.md",
        session_id=session_id,
        settings=settings or {},
    )


BASE = [EXE, "-o", "stream-json", "--auth-type", "openai"]
CASES = {
    "plain": ({}, None, BASE),
    "yolo": ({"yolo": True}, None, [*BASE, "--approval-mode", "yolo"]),
    "model": ({"model": "qwen3-coder-plus"}, None, [*BASE, "-m", "qwen3-coder-plus"]),
    "resume": ({}, SID, [*BASE, "--resume", SID]),
    "all": (
        {"yolo": True, "model": "qwen3-max"},
        SID,
        [*BASE, "--approval-mode", "yolo", "-m", "qwen3-max", "--resume", SID],
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_argv(tmp_path: Path, name: str) -> None:
    job, session, argv = CASES[name]
    spec = plugins.launch("qwen", ctx(tmp_path, session, **job))
    assert spec.argv == argv
    assert spec.prompt == "stdin" and spec.env == {}
    assert spec.prompt_text == (CONTINUE_PROMPT if session else None)
    assert CANARY not in " ".join(spec.argv)


def test_every_flag_is_in_the_real_help() -> None:
    for flag in ("-o, --output-format", "--auth-type", "--approval-mode", "-m, --model", "-r, --resume"):
        assert flag in HELP, flag
    assert re.search(r'--output-format.*choices: "text", "json", "stream-json"', HELP)
    assert re.search(r'--auth-type.*choices: "openai", "openai-responses", "anthropic"', HELP)
    assert re.search(r"--approval-mode .*yolo", HELP)


def test_the_auth_type_comes_from_the_plugin_settings(tmp_path: Path) -> None:
    spec = plugins.launch("qwen", ctx(tmp_path, settings={"auth_type": "anthropic"}))
    assert spec.argv == [EXE, "-o", "stream-json", "--auth-type", "anthropic"]
    with pytest.raises(AqError, match="plugins.qwen.auth_type 'dashscope' is not one of openai"):
        plugins.launch("qwen", ctx(tmp_path, settings={"auth_type": "dashscope"}))


def test_missing_executable_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AqError, match="install @qwen-code/qwen-code or set AQ_QWEN_BIN"):
        plugins.launch("qwen", ctx(tmp_path, executable=None))

"""The exact command lines the devin engine starts, and how the prompt reaches it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import aq_devin
import pytest

from aq_core import plugins
from aq_core.engine import LaunchContext
from aq_core.errors import AqError
from aq_core.testing import CANARY, make_job

EXE = "/opt/devin/bin/devin"


def ctx(tmp_path: Path, executable: str | None = EXE, session_id: str | None = None, **job) -> LaunchContext:
    return LaunchContext(
        job=make_job("devin", tmp_path, **job),
        attempt=1,
        executable=executable,
        workdir=tmp_path,
        prompt_file=tmp_path / "prompt.md",
        session_id=session_id,
    )


def test_default_command_line(tmp_path: Path) -> None:
    spec = plugins.launch("devin", ctx(tmp_path))
    assert spec.argv == [EXE, "-p", "--prompt-file", str(tmp_path / "prompt.md"), "--respect-workspace-trust", "false"]
    assert spec.prompt == "file"
    assert spec.prompt_text is None
    assert spec.env == {}


def test_yolo_uses_bypass_mode(tmp_path: Path) -> None:
    spec = plugins.launch("devin", ctx(tmp_path, yolo=True))
    assert spec.argv == [
        EXE,
        "-p",
        "--prompt-file",
        str(tmp_path / "prompt.md"),
        "--respect-workspace-trust",
        "false",
        "--permission-mode",
        "bypass",
    ]


def test_model_and_yolo(tmp_path: Path) -> None:
    spec = plugins.launch("devin", ctx(tmp_path, yolo=True, model="claude-sonnet-4-5"))
    assert spec.argv[-4:] == ["--permission-mode", "bypass", "--model", "claude-sonnet-4-5"]


def test_model_without_yolo_leaves_the_permission_mode_to_devin(tmp_path: Path) -> None:
    spec = plugins.launch("devin", ctx(tmp_path, model="swe-1-5"))
    assert spec.argv[-2:] == ["--model", "swe-1-5"]
    assert "--permission-mode" not in spec.argv


def test_prompt_goes_through_the_file_right_after_p(tmp_path: Path) -> None:
    spec = plugins.launch("devin", ctx(tmp_path, yolo=True, model="m"))
    # -p takes an optional inline prompt: the next token must be a flag, never a value.
    assert spec.argv[1:4] == ["-p", "--prompt-file", str(tmp_path / "prompt.md")]
    assert not any(CANARY in arg or "AQ-CANARY" in arg for arg in spec.argv)
    assert "--" not in spec.argv


def test_session_id_is_not_used(tmp_path: Path) -> None:
    spec = plugins.launch("devin", ctx(tmp_path, session_id="b7c1e9d2"))
    assert spec.argv == plugins.launch("devin", ctx(tmp_path)).argv
    assert plugins.get_engine("devin").resumes_sessions is False


def test_not_installed_names_the_override(tmp_path: Path) -> None:
    with pytest.raises(AqError) as info:
        plugins.launch("devin", ctx(tmp_path, executable=None))
    message = str(info.value)
    assert "AQ_DEVIN_BIN" in message and "devin" in message and "\n" not in message


def test_engine_registration() -> None:
    engine = plugins.get_engine("devin")
    assert engine.binary == "devin"
    assert engine.env_var == "AQ_DEVIN_BIN"
    assert engine.failure_classes == ("auth_error", "usage_limit")


def test_export_is_written_beside_the_log_when_the_core_passes_it(tmp_path: Path) -> None:
    base = ctx(tmp_path, yolo=True)
    log = tmp_path / "logs" / "job-1.2.log"
    spec = aq_devin.launch(engine="devin", ctx=replace(base, log_path=log))
    assert spec.argv[-1] == f"--export={log}.atif.json"
    assert spec.argv[:-1] == plugins.launch("devin", base).argv


def test_other_engines_are_not_answered(tmp_path: Path) -> None:
    assert aq_devin.launch(engine="claude", ctx=ctx(tmp_path)) is None
    assert aq_devin.parse_usage(engine="claude", log_path=tmp_path / "x.log") is None

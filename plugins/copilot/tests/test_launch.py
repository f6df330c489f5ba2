"""The exact command lines aq starts the Copilot CLI with, and how the prompt reaches it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aq_copilot.launcher import CONTINUATION

from aq_core import plugins
from aq_core.engine import LaunchContext
from aq_core.errors import AqError
from aq_core.testing import CANARY, make_job

EXE = "/opt/copilot/bin/copilot"
SESSION = "7fa3e947-0f75-4388-b0d2-11849cb90d73"
OTEL = {"COPILOT_OTEL_EXPORTER_TYPE": "file", "COPILOT_OTEL_FILE_EXPORTER_PATH": "/dev/stdout"}
HELP = (Path(__file__).parent / "copilot-1.0.102-help.txt").read_text()


def launch(tmp_path: Path, session_id: str | None = None, executable: str | None = EXE, **job):
    ctx = LaunchContext(
        job=make_job("copilot", tmp_path, **job),
        attempt=2 if session_id else 1,
        executable=executable,
        workdir=tmp_path,
        prompt_file=tmp_path / "prompt.md",
        session_id=session_id,
    )
    return plugins.launch("copilot", ctx)


def test_default_runs_headless_json_with_edits_only(tmp_path: Path) -> None:
    spec = launch(tmp_path)
    assert spec.argv == [EXE, "--output-format", "json", "--allow-tool=write"]
    assert spec.env == {"COPILOT_ALLOW_ALL": "false", **OTEL}
    assert spec.prompt == "stdin"
    assert spec.prompt_text is None


def test_yolo_grants_every_permission(tmp_path: Path) -> None:
    spec = launch(tmp_path, yolo=True)
    assert spec.argv == [EXE, "--output-format", "json", "--allow-all-tools", "--allow-all-paths", "--allow-all-urls"]
    assert spec.env == OTEL
    assert spec.prompt == "stdin"


def test_model_is_passed_with_the_model_flag(tmp_path: Path) -> None:
    spec = launch(tmp_path, yolo=True, model="gpt-5.4")
    assert spec.argv == [
        EXE,
        "--output-format",
        "json",
        "--allow-all-tools",
        "--allow-all-paths",
        "--allow-all-urls",
        "--model=gpt-5.4",
    ]


def test_resume_continues_the_session_and_restates_the_task(tmp_path: Path) -> None:
    spec = launch(tmp_path, session_id=SESSION, model="gpt-5.4")
    assert spec.argv == [
        EXE,
        "--output-format",
        "json",
        "--allow-tool=write",
        "--model=gpt-5.4",
        f"--session-id={SESSION}",
    ]
    assert spec.prompt == "stdin"
    assert spec.prompt_text == CONTINUATION + CANARY
    assert not any("AQ-CANARY" in arg for arg in spec.argv)


def test_a_session_id_that_is_no_uuid_is_not_resumed(tmp_path: Path) -> None:
    spec = launch(tmp_path, session_id="--yolo")
    assert spec.argv == [EXE, "--output-format", "json", "--allow-tool=write"]
    assert spec.prompt_text is None


@pytest.mark.parametrize("yolo", [False, True])
@pytest.mark.parametrize("session_id", [None, SESSION])
def test_prompt_goes_on_stdin_never_in_argv_or_env(tmp_path: Path, yolo: bool, session_id: str | None) -> None:
    spec = launch(tmp_path, session_id=session_id, yolo=yolo, model="m")
    assert spec.prompt == "stdin"
    assert "-p" not in spec.argv and "--prompt" not in spec.argv
    assert not any("AQ-CANARY" in part for part in [*spec.argv, *spec.env.values()])
    assert str(tmp_path / "prompt.md") not in spec.argv


@pytest.mark.parametrize("yolo", [False, True])
def test_every_flag_is_in_the_real_help(tmp_path: Path, yolo: bool) -> None:
    spec = launch(tmp_path, session_id=SESSION, yolo=yolo, model="m")
    for arg in spec.argv[1:]:
        if arg.startswith("--"):
            flag = arg.split("=", 1)[0]
            assert re.search(rf"(?m)^\s+(?:-\w, )?{re.escape(flag)}\b", HELP), f"{flag} is not in copilot --help"
    for name in spec.env:
        assert f"`{name}`" in HELP, f"{name} is not documented by copilot help environment"


def test_not_installed_names_the_override(tmp_path: Path) -> None:
    with pytest.raises(AqError) as info:
        launch(tmp_path, executable=None)
    message = str(info.value)
    assert "\n" not in message and "copilot" in message and "AQ_COPILOT_BIN" in message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector.example:4318"),
        ("COPILOT_OTEL_FILE_EXPORTER_PATH", "/var/log/copilot-otel.jsonl"),
        ("COPILOT_OTEL_ENABLED", "false"),
        ("AQ_COPILOT_OTEL", "0"),
    ],
)
def test_a_users_own_otel_setup_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    spec = launch(tmp_path, yolo=True)
    assert not any(key.startswith("COPILOT_OTEL") for key in spec.env)


def test_other_engines_are_not_answered(tmp_path: Path) -> None:
    ctx = LaunchContext(
        job=make_job("claude", tmp_path), attempt=1, executable=EXE, workdir=tmp_path, prompt_file=tmp_path / "p"
    )
    assert plugins.plugin_manager().hook.launch(engine="claude-not-copilot", ctx=ctx) is None
    engine = plugins.get_engine("copilot")
    assert engine.resumes_sessions and engine.binary == "copilot"
    assert engine.failure_classes == ("auth_error", "rate_limited", "usage_limit")

"""The exact command line aq-claude builds for each kind of job, checked against the real CLI's --help."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import aq_claude
import pytest

from aq_core import plugins
from aq_core.engine import LaunchContext
from aq_core.errors import AqError
from aq_core.testing import CANARY, make_job

EXE = "/opt/claude/bin/claude"
BASE = [EXE, "-p", "--output-format", "stream-json", "--verbose"]
SESSION = "9b0d7c1e-5b9a-4c55-8f0e-3a1d2c4b5e6f"
#: `claude --help` of the version the flags were checked against (2.1.328).
HELP = (Path(__file__).parent / "data" / "claude-2.1.328-help.txt").read_text()


def ctx(tmp_path: Path, *, session_id=None, max_cost_usd=None, executable=EXE, **job) -> LaunchContext:
    return LaunchContext(
        job=make_job("claude", tmp_path, **job),
        attempt=1 if session_id is None else 2,
        executable=executable,
        workdir=tmp_path,
        prompt_file=tmp_path / "prompt.md",
        session_id=session_id,
        max_cost_usd=max_cost_usd,
    )


@pytest.fixture
def as_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aq_claude, "_running_as_root", lambda: False)


@pytest.fixture
def as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aq_claude, "_running_as_root", lambda: True)


def launch(context: LaunchContext):
    return plugins.launch("claude", context)


@pytest.mark.usefixtures("as_user")
class TestArgvAsUser:
    def test_plain_job(self, tmp_path: Path) -> None:
        spec = launch(ctx(tmp_path))
        assert spec.argv == BASE
        assert spec.env == {}
        assert spec.prompt == "stdin"
        assert spec.prompt_text is None

    def test_yolo(self, tmp_path: Path) -> None:
        spec = launch(ctx(tmp_path, yolo=True))
        assert spec.argv == [*BASE, "--dangerously-skip-permissions"]
        assert spec.env == {}

    def test_model(self, tmp_path: Path) -> None:
        spec = launch(ctx(tmp_path, model="sonnet"))
        assert spec.argv == [*BASE, "--model", "sonnet"]

    def test_resume_sends_a_continuation_prompt(self, tmp_path: Path) -> None:
        spec = launch(ctx(tmp_path, session_id=SESSION))
        assert spec.argv == [*BASE, "--resume", SESSION]
        assert spec.prompt == "stdin"
        assert spec.prompt_text == aq_claude.CONTINUATION_PROMPT
        assert CANARY not in spec.prompt_text

    def test_budget(self, tmp_path: Path) -> None:
        assert launch(ctx(tmp_path, max_cost_usd=2.5)).argv == [*BASE, "--max-budget-usd", "2.5"]
        assert launch(ctx(tmp_path, max_cost_usd=3.0)).argv == [*BASE, "--max-budget-usd", "3"]
        assert launch(ctx(tmp_path, max_cost_usd=0.125)).argv == [*BASE, "--max-budget-usd", "0.125"]

    @pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
    def test_no_budget_flag_for_a_meaningless_budget(self, tmp_path: Path, bad: float) -> None:
        assert launch(ctx(tmp_path, max_cost_usd=bad)).argv == BASE

    def test_everything(self, tmp_path: Path) -> None:
        spec = launch(ctx(tmp_path, yolo=True, model="claude-opus-4-5", session_id=SESSION, max_cost_usd=10.0))
        assert spec.argv == [
            *BASE,
            "--dangerously-skip-permissions",
            "--model",
            "claude-opus-4-5",
            "--resume",
            SESSION,
            "--max-budget-usd",
            "10",
        ]
        assert spec.env == {}
        assert spec.prompt_text == aq_claude.CONTINUATION_PROMPT

    @pytest.mark.parametrize("session", ["--dangerously-skip-permissions", "", "a b", "x" * 200])
    def test_a_session_id_that_is_not_one_is_not_resumed(self, tmp_path: Path, session: str) -> None:
        spec = launch(ctx(tmp_path, session_id=session))
        assert spec.argv == BASE
        assert spec.prompt_text is None


@pytest.mark.usefixtures("as_root")
class TestArgvAsRoot:
    def test_yolo_as_root_declares_the_sandbox(self, tmp_path: Path) -> None:
        # 2.1.197 refuses --dangerously-skip-permissions for uid 0 unless IS_SANDBOX=1 (checked offline).
        spec = launch(ctx(tmp_path, yolo=True))
        assert spec.argv == [*BASE, "--dangerously-skip-permissions"]
        assert spec.env == {"IS_SANDBOX": "1"}

    def test_no_yolo_as_root_changes_nothing(self, tmp_path: Path) -> None:
        spec = launch(ctx(tmp_path, model="opus"))
        assert spec.argv == [*BASE, "--model", "opus"]
        assert spec.env == {}


def test_root_is_detected_from_the_effective_uid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aq_claude.os, "geteuid", lambda: 0)
    assert aq_claude._running_as_root()
    monkeypatch.setattr(aq_claude.os, "geteuid", lambda: 1000)
    assert not aq_claude._running_as_root()


def test_not_installed_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(AqError) as info:
        launch(ctx(tmp_path, executable=None))
    assert str(info.value) == "claude: executable not found (install @anthropic-ai/claude-code or set AQ_CLAUDE_BIN)"


def test_other_engines_are_not_answered(tmp_path: Path) -> None:
    context = ctx(tmp_path)
    context = replace(context, job=replace(context.job, engines=("codex",)))
    assert aq_claude.launch(engine="codex", ctx=context) is None
    assert aq_claude.parse_usage(engine="codex", log_path=tmp_path / "x.log") is None


def test_the_prompt_is_never_in_argv_or_env(tmp_path: Path) -> None:
    spec = launch(ctx(tmp_path, yolo=True, model="m", session_id=SESSION, max_cost_usd=1.0))
    assert not any(CANARY in part for part in spec.argv)
    assert not any(CANARY in value for value in spec.env.values())


@pytest.mark.parametrize(
    "job",
    [{}, {"yolo": True}, {"model": "sonnet"}, {"session_id": SESSION, "max_cost_usd": 1.5}],
    ids=["plain", "yolo", "model", "resume-budget"],
)
def test_every_flag_is_in_the_real_help(tmp_path: Path, job: dict) -> None:
    spec = launch(ctx(tmp_path, **job))
    for arg in spec.argv[1:]:
        if arg.startswith("-"):
            assert re.search(rf"(?m)^\s+(?:-\w, )?{re.escape(arg)}\b", HELP), f"{arg} is not in claude --help"
    # The value we pass is one of the documented choices of --output-format.
    assert '"stream-json" (realtime' in " ".join(HELP.split())

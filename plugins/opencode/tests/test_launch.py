"""The exact ``opencode run`` command lines aq starts, checked against the real CLI's help (opencode 1.18.33)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aq_opencode.argv import CONTINUE_PROMPT

from aq_core import plugins
from aq_core.engine import LaunchContext
from aq_core.errors import AqError
from aq_core.testing import CANARY, make_job

EXE = "/opt/opencode/bin/opencode"
SID = "ses_dbaf14d85ffenrVhoJzFWtTLg1"
HELP = Path(__file__).parent / "cli_help" / "opencode-1.18.33-run.txt"
HEAD = [EXE, "run", "--format=json", "--title=aq contract-job", "--print-logs", "--log-level=INFO"]


def ctx(tmp_path: Path, session_id: str | None = None, executable: str | None = EXE, **job) -> LaunchContext:
    return LaunchContext(
        job=make_job("opencode", tmp_path, **job),
        attempt=2 if session_id else 1,
        executable=executable,
        workdir=tmp_path,
        prompt_file=tmp_path / "prompt.md",
        session_id=session_id,
    )


CASES = {
    "default": ({}, None, HEAD),
    "yolo": ({"yolo": True}, None, [*HEAD, "--auto"]),
    "model": ({"model": "anthropic/claude-sonnet-4-5"}, None, [*HEAD, "--model=anthropic/claude-sonnet-4-5"]),
    "resume": ({"yolo": True}, SID, [*HEAD, "--auto", f"--session={SID}"]),
    "not-a-session-id": ({}, "--help", HEAD),
}


@pytest.mark.parametrize("name", list(CASES))
def test_argv(tmp_path: Path, name: str) -> None:
    job, session, argv = CASES[name]
    spec = plugins.launch("opencode", ctx(tmp_path, session, **job))
    assert spec.argv == argv
    assert spec.prompt == "stdin"
    assert spec.env == {}
    assert spec.prompt_text == (CONTINUE_PROMPT if session == SID else None)
    assert not any(CANARY in a for a in spec.argv)


def test_every_flag_is_in_the_real_help(tmp_path: Path) -> None:
    help_text = HELP.read_text()
    offered = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", help_text))
    for _job, _session, argv in CASES.values():
        for arg in argv[2:]:
            assert arg.split("=", 1)[0] in offered, f"{arg} is not a flag of `opencode run` 1.18.33"
    assert '[choices: "default", "json"]' in help_text  # --format=json is one of its values
    assert re.search(r"--auto\s+auto-approve permissions", help_text)


def test_not_installed(tmp_path: Path) -> None:
    with pytest.raises(AqError, match="opencode"):
        plugins.launch("opencode", ctx(tmp_path, executable=None))

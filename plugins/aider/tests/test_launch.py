"""The exact aider command lines aq starts, checked against the real CLI's help (aider 0.86.2)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from aq_aider.argv import BASE_FLAGS, MODEL_SOURCES, build

from aq_core import plugins
from aq_core.engine import LaunchContext
from aq_core.errors import AqError
from aq_core.testing import CANARY, make_job

EXE = "/opt/aider/bin/aider"
HELP = Path(__file__).parent / "cli_help" / "aider-0.86.2.txt"


def ctx(tmp_path: Path, executable: str | None = EXE, log: bool = True, **job) -> LaunchContext:
    return LaunchContext(
        job=make_job("aider", tmp_path / "repo", **job),
        attempt=1,
        executable=executable,
        workdir=tmp_path / "repo",
        prompt_file=tmp_path / "tmp" / "job.1.prompt",
        log_path=tmp_path / "logs" / "job.1.log" if log else None,
    )


def test_argv(tmp_path: Path) -> None:
    spec = plugins.launch("aider", ctx(tmp_path, model="anthropic/claude-sonnet-4-5"))
    assert spec.argv == [
        EXE,
        "--message-file",
        str(tmp_path / "tmp" / "job.1.prompt"),
        *BASE_FLAGS,
        f"--chat-history-file={tmp_path / 'logs' / 'job.1.log'}.aider-chat.md",
        f"--input-history-file={os.devnull}",
        "--model=anthropic/claude-sonnet-4-5",
    ]
    assert spec.prompt == "file"
    assert spec.env == {"COLUMNS": "4000", "BROWSER": "true"}
    assert not any(CANARY in a for a in spec.argv)


def test_nothing_aider_writes_is_in_the_work_tree(tmp_path: Path) -> None:
    """Chat and input history go next to the log or nowhere; the repo map (its tags cache) is off."""
    for log in (True, False):
        argv = plugins.launch("aider", ctx(tmp_path, log=log, model="m")).argv
        paths = [a.split("=", 1)[1] for a in argv if a.startswith(("--chat-history-file=", "--input-history-file="))]
        assert len(paths) == 2
        assert not any(Path(p).is_relative_to(tmp_path / "repo") for p in paths)
        assert "--map-tokens=0" in argv and "--no-gitignore" in argv and "--no-auto-commits" in argv


def test_every_flag_is_in_the_real_help(tmp_path: Path) -> None:
    offered = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", HELP.read_text()))
    for arg in plugins.launch("aider", ctx(tmp_path, model="m")).argv[1:]:
        if arg.startswith("--"):
            assert arg.split("=", 1)[0] in offered, f"{arg} is not a flag of aider 0.86.2"


def test_no_model_and_no_key_fails_fast_instead_of_a_browser_login(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "repo").mkdir()
    (tmp_path / "home").mkdir()
    env = {"HOME": str(tmp_path / "home"), "PATH": "/usr/bin"}
    with pytest.raises(AqError, match=r"engine aider: no model") as info:
        build(ctx(tmp_path), environ=env)
    assert "\n" not in str(info.value)
    for name in MODEL_SOURCES:
        assert build(ctx(tmp_path), environ={**env, name: "x"}).argv  # aider picks its default from the key
    (tmp_path / "home" / ".aider.conf.yml").write_text("model: sonnet\n")
    assert build(ctx(tmp_path), environ=env).argv
    assert build(ctx(tmp_path, model="gpt-4o"), environ={}).argv


def test_not_installed(tmp_path: Path) -> None:
    with pytest.raises(AqError, match="aider"):
        plugins.launch("aider", ctx(tmp_path, executable=None))

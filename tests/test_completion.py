"""Shell completion: the script ``aq completion bash`` prints, run in a real bash against a real queue,
offers the commands, options, job ids (by state where the command needs one) and engine names."""

from __future__ import annotations

import functools
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import aq, write_job
from pgserver import NewDb

from aq_core import completion
from aq_core.cli import build_parser
from aq_core.store import State
from aq_core.store_fs import FsStore

BIN = Path(sys.executable).parent  # where this environment's `aq` script is


@functools.cache
def _bash_script(path: str) -> str:
    """What ``aq completion bash`` prints, asked once (the same text every time, as the last test checks)."""
    return subprocess.run(
        ["aq", "completion", "bash"], env={**os.environ, "PATH": path}, capture_output=True, text=True, check=True
    ).stdout


def _bash_complete(words: list[str], cwd: Path, env: dict[str, str] | None = None) -> list[str]:
    """Return what bash offers for the last of ``words`` (``words[0]`` is ``aq``), as a user pressing Tab."""
    full_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    driver = "\n".join(
        [
            _bash_script(full_env["PATH"]),
            f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)})",
            f"COMP_CWORD={len(words) - 1}",
            f"COMP_LINE={shlex.quote(' '.join(words))}",
            "_aq_complete",
            'printf "%s\\n" "${COMPREPLY[@]}"',
        ]
    )
    run = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", driver],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    return sorted(line for line in run.stdout.splitlines() if line)


@pytest.fixture
def queue(tmp_path: Path) -> Path:
    """A queue with a job in each state: fix-api (inbox), doc-typo (building), fix-db (failed), old-run (done)."""
    root, jobs = tmp_path / "queue", tmp_path / "jobs"
    front = {"engine": "command", "command": "true", "cwd": str(tmp_path)}
    paths = [str(write_job(jobs, job_id, front)) for job_id in ("fix-api", "doc-typo", "fix-db", "old-run")]
    assert aq("add", *paths, root=root).returncode == 0
    store = FsStore(root)
    assert store.claim("doc-typo")
    assert store.claim("fix-db") and store.move("fix-db", State.BUILDING, State.FAILED)
    assert store.claim("old-run") and store.move("old-run", State.BUILDING, State.DONE)
    return root


ALL = ["doc-typo", "fix-api", "fix-db", "old-run"]


@pytest.mark.parametrize(
    ("words", "offered"),
    [
        (["aq", "logs", ""], ALL),
        (["aq", "insights", ""], ALL),
        (["aq", "logs", "fix-"], ["fix-api", "fix-db"]),
        (["aq", "logs", "-f", "o"], ["old-run"]),
        (["aq", "retry", ""], ["fix-db"]),  # only a failed job can be retried
        (["aq", "cancel", ""], ["doc-typo", "fix-api"]),  # only a waiting or running job can be cancelled
        (["aq", "logs", "fix-api", ""], []),  # one job per command
    ],
)
def test_job_ids_come_from_the_queue(queue: Path, tmp_path: Path, words: list[str], offered: list[str]) -> None:
    assert _bash_complete(words, tmp_path, {"AGENT_QUEUE_ROOT": str(queue)}) == offered


def test_root_given_on_the_line_is_the_queue_listed(queue: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    job = write_job(tmp_path / "more", "elsewhere", {"engine": "command", "command": "true", "cwd": str(tmp_path)})
    assert aq("add", str(job), root=other).returncode == 0
    env = {"AGENT_QUEUE_ROOT": str(queue)}
    assert _bash_complete(["aq", "--root", str(other), "logs", ""], tmp_path, env) == ["elsewhere"]
    # bash splits --root=DIR at the '=': still that queue.
    assert _bash_complete(["aq", "--root", "=", str(other), "retry", ""], tmp_path, env) == []
    assert _bash_complete(["aq", "--root", "=", str(other), "cancel", ""], tmp_path, env) == ["elsewhere"]
    assert _bash_complete(["aq", "--root", str(tmp_path / "nothing"), "logs", ""], tmp_path, env) == []


def test_commands_options_engines_and_files(queue: Path, tmp_path: Path) -> None:
    env = {"AGENT_QUEUE_ROOT": str(queue)}
    commands = _bash_complete(["aq", ""], tmp_path, env)
    assert {"add", "logs", "retry", "cancel", "insights", "install", "uninstall", "completion"} <= set(commands)
    assert not [c for c in commands if c.startswith("_")], "the hidden completion helper is offered"
    assert _bash_complete(["aq", "re"], tmp_path, env) == ["recover", "report", "resume", "retry"]
    assert _bash_complete(["aq", "--r"], tmp_path, env) == ["--root"]
    assert _bash_complete(["aq", "logs", "--"], tmp_path, env) == ["--attempt", "--follow", "--help"]
    assert _bash_complete(["aq", "completion", ""], tmp_path, env) == ["bash", "fish", "zsh"]

    engines = _bash_complete(["aq", "insights", "--engine", ""], tmp_path, env)
    assert {"command", "claude", "codex", "copilot", "devin"} <= set(engines)
    assert _bash_complete(["aq", "insights", "--engine", "co"], tmp_path, env) == [
        e for e in engines if e.startswith("co")
    ]
    assert _bash_complete(["aq", "resume", "cl"], tmp_path, env) == ["claude"]

    (tmp_path / "jobs" / "sub").mkdir()
    assert _bash_complete(["aq", "add", "jobs/fix-"], tmp_path, env) == ["jobs/fix-api.md", "jobs/fix-db.md"]
    assert _bash_complete(["aq", "--root", "jo"], tmp_path, env) == ["jobs"]
    assert _bash_complete(["aq", "--root", "jobs/"], tmp_path, env) == ["jobs/sub"]


@pytest.mark.requires("postgresql")
def test_job_ids_from_a_postgresql_store(new_db: NewDb, tmp_path: Path) -> None:
    url = new_db()
    for job_id in ("pg-one", "pg-two"):
        path = write_job(tmp_path / "jobs", job_id, {"engine": "command", "command": "true", "cwd": str(tmp_path)})
        added = subprocess.run(
            [sys.executable, "-m", "aq_core", "--store", url, "add", str(path)], capture_output=True, text=True
        )
        assert added.returncode == 0, added.stderr
    assert _bash_complete(["aq", "--store", url, "logs", "pg-"], tmp_path) == ["pg-one", "pg-two"]
    assert _bash_complete(["aq", "logs", "pg-"], tmp_path, {"AQ_STORE": url}) == ["pg-one", "pg-two"]


def test_listing_job_ids_loads_no_git_and_no_plugin(queue: Path) -> None:
    code = (
        "import sys\n"
        "from aq_core.cli import main\n"
        "main(['__complete', '2', 'aq', 'logs', ''])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('git', 'pluggy', 'aq_claude', 'yaml'))\n"
        "print('heavy:', heavy)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "AGENT_QUEUE_ROOT": str(queue)},
        capture_output=True,
        text=True,
        check=True,
    )
    lines = run.stdout.splitlines()
    assert lines[0] == "words"
    assert [line.split("\t")[0] for line in lines[1:-1]] == ALL
    assert lines[-1] == "heavy: []"


def test_a_new_command_taking_a_job_completes_job_ids(queue: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_QUEUE_ROOT", str(queue))
    parser = build_parser()
    sub = completion._subcommands(parser)
    assert sub is not None
    p = sub.add_parser("peek", help="a plugin's own command")
    p.add_argument("job", metavar="JOB")
    p.add_argument("--engine", metavar="NAME")
    assert completion.complete(parser, ["aq", "peek", "f"], 2) == ("words", ["fix-api\tinbox", "fix-db\tfailed"])
    kind, engines = completion.complete(parser, ["aq", "peek", "x", "--engine", "dev"], 4)
    assert (kind, engines) == ("words", ["devin"])


def test_completion_scripts_name_the_helper_and_bad_shell_is_exit_2(tmp_path: Path) -> None:
    for shell in ("bash", "zsh", "fish"):
        run = subprocess.run(
            [sys.executable, "-m", "aq_core", "completion", shell], capture_output=True, text=True, check=True
        )
        assert run.stdout == completion.SCRIPTS[shell]
        assert "__complete" in run.stdout
    bad = subprocess.run([sys.executable, "-m", "aq_core", "completion", "tcsh"], capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1 and "tcsh" in bad.stderr
    syntax = subprocess.run(["bash", "-n"], input=completion.BASH, capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr

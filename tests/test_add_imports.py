"""What `aq add` loads: the start of every job's pick-up imports only aq's own small modules.

Each test runs the real command (the ``aq`` console script a user runs, else ``python -m aq_core``)
in a subprocess with ``-X importtime`` and reads the modules it imported; the job must really be
queued. No timing is asserted: the list of modules is what the start-up costs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import meta, state_of

#: Each costs `aq add` milliseconds (dataclasses with inspect, typing) or far more (PyYAML,
#: pluggy, the plugins, importlib.metadata, GitPython); threading, json and shutil are not needed.
HEAVY = (
    "dataclasses",
    "inspect",
    "typing",
    "yaml",
    "pluggy",
    "git",
    "importlib.metadata",
    "aq_claude",
    "threading",
    "json",
    "shutil",
    "datetime",
    "aq_core.plugins",
    "aq_core.job_model",
    "aq_core.config_model",
    "aq_core.retry",
)


def aq_argv() -> list[str]:
    script = Path(sys.executable).with_name("aq")
    return [sys.executable, "-X", "importtime", *([str(script)] if script.exists() else ["-m", "aq_core"])]


def imported(root: Path, *args: str, cwd: Path) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``aq --root ROOT ARGS``; return it and the names of the modules it imported."""
    env = {k: v for k, v in os.environ.items() if k not in ("AQ_LOAD_PLUGINS", "AQ_TRACE_PLUGINS")}
    run = subprocess.run(
        [*aq_argv(), "--root", str(root), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    lines = [line for line in run.stderr.splitlines() if line.startswith("import time:")]
    return run, {line.rsplit("|", 1)[1].strip() for line in lines[1:]}  # the first line is the header


def job_file(folder: Path, job_id: str, front: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{job_id}.md"
    path.write_text(f"---\n{front}---\nDo the task.\n")
    return path


def test_aq_add_of_a_simple_job_imports_nothing_heavy(tmp_path: Path) -> None:
    root, work = tmp_path / "q", tmp_path / "work"
    work.mkdir()
    front = f"engine: command\ncommand: [/bin/true]\ncwd: {work}\ntimeout: 30m\nlock: db\npriority: 3\n"
    first, _ = imported(root, "add", str(job_file(tmp_path / "jobs", "first", front)), cwd=work)
    assert first.returncode == 0, first.stderr  # the first add writes the plugin index (plugins loaded)
    run, names = imported(root, "add", str(job_file(tmp_path / "jobs", "second", front)), cwd=work)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["second"]
    assert "aq_core.cli_add" in names and "aq_core.store_fs" in names  # the probe sees aq's own imports
    assert sorted(names & set(HEAVY)) == []
    # The job is queued as before: in inbox/, its meta written from the checked values.
    assert state_of(root, "second") == "inbox"
    record = meta(root, "second")
    assert (record["engine"], record["lock"], record["priority"]) == ("command", "db", "3")
    assert float(record["added"]) > 0 and record["add_dir"] == str(work)


def test_aq_validate_and_a_bad_job_stay_as_light(tmp_path: Path) -> None:
    root, work = tmp_path / "q", tmp_path / "work"
    work.mkdir()
    good = job_file(tmp_path / "jobs", "good", f"engine: command\ncommand: [/bin/true]\ncwd: {work}\n")
    assert imported(root, "add", str(good), cwd=work)[0].returncode == 0  # the plugin index is written
    run, names = imported(root, "validate", str(good), cwd=work)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"{good}: ok (job good, engine command)"
    assert sorted(names & set(HEAVY)) == []
    bad = job_file(tmp_path / "jobs", "bad", "engine: nosuch\ncwd: /no/such/dir\n")
    run, names = imported(root, "add", str(bad), cwd=work)
    assert run.returncode == 2
    assert "engine: 'nosuch' is not installed" in run.stderr and "cwd: '/no/such/dir': no such directory" in run.stderr
    assert state_of(root, "bad") is None
    assert sorted(names & set(HEAVY)) == []


def test_profiles_from_config_yaml_apply_without_the_config_dataclass(tmp_path: Path) -> None:
    root, work = tmp_path / "q", tmp_path / "work"
    work.mkdir()
    root.mkdir(mode=0o700)
    (root / "config.yaml").write_text(
        "profiles:\n  fast:\n    engine: command\n    command: [/bin/true]\n    lock: gpu\n"
    )
    warm = job_file(tmp_path / "jobs", "warm", f"engine: command\ncommand: [/bin/true]\ncwd: {work}\n")
    assert imported(root, "add", str(warm), cwd=work)[0].returncode == 0
    run, names = imported(root, "add", str(job_file(tmp_path / "jobs", "prof", "profile: fast\n")), cwd=work)
    assert run.returncode == 0, run.stderr
    assert (meta(root, "prof")["profile"], meta(root, "prof")["lock"]) == ("fast", "gpu")
    assert "yaml" in names  # config.yaml is real YAML: PyYAML reads it
    assert sorted(names & {"dataclasses", "inspect", "typing", "aq_core.config_model", "aq_core.job_model"}) == []
    # A config problem is still one line naming the key, and nothing is queued.
    (root / "config.yaml").write_text("profiles:\n  fast:\n    engine: command\n    timeout: soon\n")
    run, _ = imported(root, "add", str(job_file(tmp_path / "jobs", "late", "profile: fast\n")), cwd=work)
    assert run.returncode == 2 and "profiles.fast: timeout: 'soon'" in run.stderr
    assert state_of(root, "late") is None

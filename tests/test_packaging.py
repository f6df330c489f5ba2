"""Packaging: each distribution installs alone with a plain pip install, and the unchanged core finds,
lists and runs a third-party engine plugin that only pip installed.

Everything runs in real subprocesses without the network (``--no-index``); sources are copied to
``tmp_path`` first so no build artefacts land in the repository.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import site
import subprocess
import sys
import sysconfig
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = Path(__file__).resolve().parent / "example_plugin"
ENGINE_PLUGINS = ("claude", "codex", "copilot", "devin", "gemini", "qwen")
BUILT_INS = {"command", "fallbacks", "git"}
TIMEOUT = 60.0
# What a build or a test run may leave in a source tree.
JUNK_PATTERNS = ("__pycache__", "*.pyc", "*.egg-info", "build", "dist", ".pytest_cache")
JUNK = shutil.ignore_patterns(*JUNK_PATTERNS)


def _env(**extra: str) -> dict[str, str]:
    """Return the test environment without anything that could steer pip or aq from outside."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "AQ_")) and k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONNOUSERSITE")
    }
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    env.update(extra)
    return env


def _run(argv: list[str], *, env: dict[str, str], cwd: Path, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """Run ``argv`` to completion; on the deadline kill its whole process group and fail."""
    proc = subprocess.Popen(
        [str(a) for a in argv],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{argv} still running after {timeout:g}s\nstdout:\n{out}\nstderr:\n{err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"{proc.args} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def _pip_install(python: Path | str, source: Path, *options: str, cwd: Path) -> None:
    """Build ``source`` into a wheel and install it: no index, no isolation, no dependencies."""
    argv = [python, "-m", "pip", "install", "--no-index", "--no-build-isolation", "--no-deps", "--no-cache-dir"]
    _ok(_run([*argv, *options, source], env=_env(), cwd=cwd))


def _project(source: Path) -> dict:
    return tomllib.loads((source / "pyproject.toml").read_text())["project"]


def _package_files(root: Path, package: str) -> set[str]:
    """Return the files of ``package`` under ``root``, relative to it, without bytecode."""
    return {
        str(p.relative_to(root))
        for p in (root / package).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def _only_distribution(target: Path) -> metadata.Distribution:
    dists = list(metadata.distributions(path=[str(target)]))
    assert len(dists) == 1, f"expected one distribution in {target}, found {[d.metadata['Name'] for d in dists]}"
    return dists[0]


def _entry_points(dist: metadata.Distribution, group: str) -> dict[str, str]:
    return {ep.name: ep.value for ep in dist.entry_points if ep.group == group}


def _engines(aq: list, env: dict[str, str], cwd: Path) -> dict[str, dict]:
    """Return what ``aq engines --json`` lists, by engine name (``aq`` is the command to run)."""
    proc = _ok(_run([*aq, "engines", "--json"], env=env, cwd=cwd))
    return {row["name"]: row for row in json.loads(proc.stdout)["engines"]}


# -- each distribution installs alone ------------------------------------------------------------


def test_core_builds_and_installs_non_editable(tmp_path: Path) -> None:
    source = tmp_path / "src" / "aq-core"
    source.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "aq_core", source / "aq_core", ignore=JUNK)
    target = tmp_path / "target"
    _pip_install(sys.executable, source, "--target", str(target), cwd=tmp_path)

    declared = _project(source)
    dist = _only_distribution(target)
    assert dist.metadata["Name"] == "aq-core"
    assert dist.version == declared["version"]
    assert _entry_points(dist, "console_scripts") == {"aq": "aq_core.cli:main"}
    assert _entry_points(dist, "aq") == declared["entry-points"]["aq"]
    assert set(_entry_points(dist, "aq")) >= BUILT_INS, "the built-in plugins load through the entry point group"
    # Every module and data file of the source is in the wheel (a subpackage missing from
    # [tool.setuptools] packages would be silently left out).
    assert _package_files(target, "aq_core") == _package_files(source, "aq_core")

    # The installed copy, not the editable one, is what runs.
    env = _env(PYTHONPATH=str(target), AQ_LOAD_PLUGINS="")
    script = target / "bin" / "aq"
    assert os.access(script, os.X_OK)
    version = _ok(_run([script, "--version"], env=env, cwd=tmp_path)).stdout.strip()
    assert version == f"aq {declared['version']}"
    where = _ok(_run([sys.executable, "-c", "import aq_core; print(aq_core.__file__)"], env=env, cwd=tmp_path))
    assert Path(where.stdout.strip()).is_relative_to(target)
    engines = _engines([script], env, tmp_path)
    assert engines["command"]["distribution"] == "aq-core"


@pytest.mark.parametrize("name", ENGINE_PLUGINS)
def test_engine_plugin_installs_alone(tmp_path: Path, name: str) -> None:
    package, dist_name = f"aq_{name}", f"aq-{name}"
    source = tmp_path / "src" / dist_name
    shutil.copytree(REPO / "plugins" / name, source, ignore=shutil.ignore_patterns("tests", *JUNK_PATTERNS))
    assert (source / package / "__init__.py").is_file(), f"plugins/{name}/{package}/__init__.py does not exist"
    target = tmp_path / "target"
    _pip_install(sys.executable, source, "--target", str(target), cwd=tmp_path)

    declared = _project(source)
    dist = _only_distribution(target)
    assert dist.metadata["Name"] == dist_name
    assert dist.version == declared["version"]
    assert _entry_points(dist, "aq") == {name: package}
    assert any(re.match(r"aq[-_]core\b", req) for req in dist.requires or []), "the plugin must depend on aq-core"
    assert _package_files(target, package) == _package_files(source, package)

    # The installed package imports, and the core loads it through its entry point (alone).
    env = _env(PYTHONPATH=str(target), AQ_LOAD_PLUGINS=dist_name)
    code = f"import {package}; print({package}.__file__)"
    where = _ok(_run([sys.executable, "-c", code], env=env, cwd=tmp_path))
    assert Path(where.stdout.strip()).is_relative_to(target)
    engines = _engines([sys.executable, "-m", "aq_core"], env, tmp_path)
    assert engines[name]["distribution"] == dist_name
    assert engines[name]["version"] == declared["version"]


# -- a third-party plugin, installed only by pip ------------------------------------------------


def _outer_site_dirs() -> list[str]:
    """Return the site-packages of this interpreter (where aq-core and its dependencies live)."""
    dirs = [sysconfig.get_path("purelib"), sysconfig.get_path("platlib"), *site.getsitepackages()]
    return [d for d in dict.fromkeys(dirs) if os.path.isdir(d)]


def _scratch_venv(path: Path) -> Path:
    """Create a venv that sees this environment's packages (without installing any); return its python."""
    _ok(_run([sys.executable, "-m", "venv", "--without-pip", path], env=_env(), cwd=path.parent))
    python = path / "bin" / "python"
    purelib = _ok(_run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], env=_env(), cwd=path))
    # addsitedir, not a bare path: it also runs the .pth files there (aq-core's editable finder).
    lines = [f"import site; site.addsitedir({d!r})\n" for d in _outer_site_dirs()]
    (Path(purelib.stdout.strip()) / "aq-outer-env.pth").write_text("".join(lines))
    return python


def _write_job(path: Path, workdir: Path, prompt: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"---\nengine: echo\ncwd: {workdir}\nyolo: true\nmodel: tiny\ntimeout: 30s\n---\n{prompt}\n")
    return path


def test_third_party_plugin_installed_by_pip_lists_and_runs(tmp_path: Path) -> None:
    source = tmp_path / "src" / "aq-echo"
    shutil.copytree(EXAMPLE, source, ignore=JUNK)
    agent = source / "aq-echo-agent"
    agent.chmod(0o755)
    python = _scratch_venv(tmp_path / "venv")
    _pip_install(python, source, cwd=tmp_path)
    declared = _project(source)

    env = _env(AQ_ECHO_BIN=str(agent))
    aq = [python, "-m", "aq_core"]
    engines = _engines(aq, env, tmp_path)
    keys = ("name", "distribution", "version", "executable", "found")
    assert {k: engines["echo"].get(k) for k in keys} == {
        "name": "echo",
        "distribution": "aq-echo",
        "version": declared["version"],
        "executable": str(agent),
        "found": True,
    }
    assert engines["command"]["distribution"] == "aq-core"

    root, workdir = tmp_path / "queue", tmp_path / "work"
    workdir.mkdir()
    prompt = "Write the greeting. PROMPT-MARKER-5d1e"
    job = _write_job(tmp_path / "jobs" / "echo-job.md", workdir, prompt)
    aq += ["--root", root]
    added = _ok(_run([*aq, "add", job], env=env, cwd=tmp_path))
    assert added.stdout.split() == ["echo-job"]
    assert "warning" not in added.stderr
    _ok(_run([*aq, "run", "--once"], env=env, cwd=tmp_path))

    assert (root / "done" / "echo-job.md").is_file(), sorted(str(p.relative_to(root)) for p in root.rglob("*.md"))
    output = workdir / "echo-output.txt"
    assert output.is_file(), "the echo agent did not run in the job's cwd"
    lines = output.read_text().splitlines()
    # launch() honoured yolo and model; the prompt came on stdin, never in argv.
    assert lines[0] == "args: --yolo --model tiny"
    assert lines[1] == "job: echo-job"
    assert prompt in lines[2:]

    status = json.loads(_ok(_run([*aq, "status", "--json"], env=env, cwd=tmp_path)).stdout)
    (row,) = status["jobs"]
    assert (row["id"], row["state"], row["engine"], row["result"], row["attempts"]) == (
        "echo-job",
        "done",
        "echo",
        "ok",
        1,
    )
    # parse_usage of the installed plugin read the agent's summary line.
    assert (row.get("tokens_in"), row.get("tokens_out")) == (12, 3)


def test_core_without_the_plugin_rejects_its_engine(tmp_path: Path) -> None:
    for path in REPO.joinpath("aq_core").rglob("*.py"):
        text = path.read_text()
        assert "aq_echo" not in text and "aq-echo" not in text, f"{path} knows about the example plugin"
    with pytest.raises(metadata.PackageNotFoundError):
        metadata.distribution("aq-echo")

    env = _env()
    installed = sorted(_engines([sys.executable, "-m", "aq_core"], env, tmp_path))
    assert "echo" not in installed
    workdir = tmp_path / "work"
    workdir.mkdir()
    job = _write_job(tmp_path / "jobs" / "echo-job.md", workdir, "hello")

    checked = _run([sys.executable, "-m", "aq_core", "validate", job], env=env, cwd=tmp_path)
    assert checked.returncode == 2, checked
    assert checked.stdout == ""
    (line,) = checked.stderr.splitlines()
    assert "engine" in line and "'echo'" in line, line
    listing = re.search(r"installed: ([^)]*)\)", line)
    assert listing, line
    assert listing[1].split(", ") == installed

    root = tmp_path / "queue"
    added = _run([sys.executable, "-m", "aq_core", "--root", root, "add", job], env=env, cwd=tmp_path)
    assert added.returncode == 2, added
    assert not list(root.rglob("echo-job*")), "an invalid job was enqueued"

"""The ``requires`` marker: a missing system tool skips its tests with the reason in the summary, and
fails them under ``CI=true``; a present one lets them run. Each case is a real pytest run in a subprocess,
with PATH (and ``AQ_BWRAP_BIN``) pointing at fake tools or at nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pgserver import find_binary

TESTS = Path(__file__).resolve().parent

INNER_CONFTEST = """
import pathlib
import pgserver

# Debian's versioned folder is replaced by one the test controls (this machine has PostgreSQL there).
pgserver.PG_LIB = pathlib.Path({pg_lib!r})
"""

INNER_TESTS = """
import pytest
from requires import require


@pytest.mark.requires("chromium")
def test_browser():
    pass


@pytest.mark.requires("postgresql", "chromium")
def test_database():
    pass


@pytest.fixture
def sandbox():
    require("bwrap")
    return "sandbox"


def test_sandbox(sandbox):
    assert sandbox == "sandbox"


def test_needs_nothing():
    pass
"""


# The lines pytest names the two marked tests by (a decorated test: its decorator's line).
MARKED_LINES = [n for n, line in enumerate(INNER_TESTS.splitlines(), 1) if line.startswith("@pytest.mark.requires")]


def _tool(folder: Path, name: str, body: str = "exit 0") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def _pytest(
    tmp_path: Path, *, path: str, bwrap: str, pg_lib: Path, ci: str | None = None
) -> subprocess.CompletedProcess:
    """Run the inner tests with ``-ra`` in a fresh pytest process; return the finished process."""
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    (project / "conftest.py").write_text(INNER_CONFTEST.format(pg_lib=str(pg_lib)))
    (project / "test_inner.py").write_text(INNER_TESTS)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS", "AQ_BWRAP_BIN")}
    env.update(PATH=path, PYTHONPATH=str(TESTS), AQ_BWRAP_BIN=bwrap)
    if ci is not None:
        env["CI"] = ci
    argv = [sys.executable, "-m", "pytest", "-ra", "-p", "no:cacheprovider", "-p", "requires", "test_inner.py"]
    return subprocess.run(argv, cwd=project, env=env, capture_output=True, text=True, timeout=120)


def _summary(out: str) -> list[str]:
    """Return the short test summary lines (``SKIPPED ...``, ``ERROR ...``)."""
    return [line for line in out.splitlines() if line.startswith(("SKIPPED", "ERROR", "FAILED"))]


def test_missing_tools_are_skipped_with_the_reason_in_the_summary(tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    run = _pytest(tmp_path, path=str(empty), bwrap=str(tmp_path / "no-such-bwrap"), pg_lib=tmp_path / "no-pg")

    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed, 3 skipped" in run.stdout, run.stdout
    lines = _summary(run.stdout)
    assert len(lines) == 3, run.stdout
    text = "\n".join(lines)
    assert "needs chromium: Chromium is not installed (no chromium on PATH; Debian package: chromium)" in text
    assert "needs postgresql: PostgreSQL server binaries are not installed (initdb, pg_ctl, postgres" in text
    assert "needs bwrap: bubblewrap is not installed (AQ_BWRAP_BIN=" in text
    assert all("scripts/test installs it on Debian when run as root" in line for line in lines)
    # A marked test is named by its own file and line, not by the plugin's.
    assert [line.split(": needs ")[0] for line in lines if "needs bwrap" not in line] == [
        f"SKIPPED [1] test_inner.py:{n}" for n in MARKED_LINES
    ], lines


def test_under_ci_a_missing_tool_is_a_failure(tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    run = _pytest(
        tmp_path, path=str(empty), bwrap=str(tmp_path / "no-such-bwrap"), pg_lib=tmp_path / "no-pg", ci="true"
    )

    assert run.returncode == 1, run.stdout + run.stderr
    assert "skipped" not in run.stdout.splitlines()[-1], run.stdout
    lines = _summary(run.stdout)
    assert len(lines) == 3 and all(line.startswith("ERROR") for line in lines), run.stdout
    text = "\n".join(lines)
    for tool in ("chromium", "postgresql", "bwrap"):
        assert f"CI=true and {tool} is missing" in text, text


def test_present_tools_let_the_tests_run(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    _tool(bin_dir, "chromium")
    for name in ("initdb", "pg_ctl", "postgres"):
        _tool(bin_dir, name)
    bwrap = _tool(tmp_path / "sandbox-bin", "bwrap")
    run = _pytest(tmp_path, path=str(bin_dir), bwrap=str(bwrap), pg_lib=tmp_path / "no-pg", ci="true")

    assert run.returncode == 0, run.stdout + run.stderr
    assert "4 passed" in run.stdout and _summary(run.stdout) == [], run.stdout


def test_postgresql_is_found_in_debians_versioned_folder(tmp_path: Path) -> None:
    lib = tmp_path / "lib-postgresql"
    _tool(lib / "13" / "bin", "initdb")
    newest = _tool(lib / "15" / "bin", "initdb")
    _tool(lib / "15" / "bin", "pg_ctl")
    _tool(lib / "15" / "bin", "postgres")
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    bwrap = _tool(tmp_path / "sandbox-bin", "bwrap")
    run = _pytest(tmp_path, path=str(empty), bwrap=str(bwrap), pg_lib=lib)

    # Only Chromium is missing: the server binaries came from <lib>/15/bin, not PATH.
    assert "2 passed, 2 skipped" in run.stdout, run.stdout
    lines = _summary(run.stdout)
    assert [line.split(": needs ")[0] for line in lines] == [f"SKIPPED [1] test_inner.py:{n}" for n in MARKED_LINES], (
        lines
    )
    assert all(": needs chromium: Chromium is not installed" in line for line in lines)

    old = os.environ["PATH"]
    try:
        os.environ["PATH"] = str(empty)
        assert find_binary("initdb", base=lib) == str(newest)
        assert find_binary("pg_ctl", base=lib) == str(lib / "15" / "bin" / "pg_ctl")
        assert find_binary("pg_ctl", base=tmp_path / "nothing") is None
    finally:
        os.environ["PATH"] = old


def test_bubblewrap_that_cannot_sandbox_here_is_skipped_with_its_error(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    _tool(bin_dir, "chromium")
    for name in ("initdb", "pg_ctl", "postgres"):
        _tool(bin_dir, name)
    bwrap = _tool(tmp_path / "sandbox-bin", "bwrap", "echo 'bwrap: No permissions to create new namespace' >&2; exit 1")
    run = _pytest(tmp_path, path=str(bin_dir), bwrap=str(bwrap), pg_lib=tmp_path / "no-pg")

    assert "3 passed, 1 skipped" in run.stdout, run.stdout
    (line,) = _summary(run.stdout)
    assert f"bubblewrap at {bwrap} cannot make a sandbox here: bwrap: No permissions to create new namespace" in line


def test_an_unknown_tool_is_a_usage_error(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_typo.py").write_text(
        'import pytest\n\n@pytest.mark.requires("chromum")\ndef test_x():\n    pass\n'
    )
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = str(TESTS)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "requires", "test_typo.py"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0 and "passed" not in run.stdout.splitlines()[-1], run.stdout
    assert "requires('chromum'): unknown tool; known: bwrap, chromium, postgresql" in run.stdout + run.stderr

"""The system tools some tests need (Chromium, PostgreSQL, bubblewrap): found, skipped, or failed.

A test says what it needs with ``@pytest.mark.requires("chromium")`` (or a module's ``pytestmark``);
a fixture calls ``require("postgresql")``. When the tool is missing the test is skipped with the
reason (``-ra`` prints it in the summary), never silently; under ``CI=true`` a missing tool is a
failure instead, because CI's set-up (``scripts/test``) must have installed it. This module is a
pytest plugin: ``tests/conftest.py`` registers it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from functools import cache

import pytest

HINT = "scripts/test installs it on Debian when run as root"


def chromium_path() -> str | None:
    """Return the Chromium the browser tests drive (Debian's ``chromium`` on PATH), or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def bwrap_path() -> str | None:
    """Return bubblewrap as aq finds it: ``AQ_BWRAP_BIN``, else ``bwrap`` on PATH."""
    given = os.environ.get("AQ_BWRAP_BIN")
    if given:
        return given if os.access(given, os.X_OK) else None
    return shutil.which("bwrap")


def _chromium() -> str | None:
    if chromium_path() is None:
        return "Chromium is not installed (no chromium on PATH; Debian package: chromium)"
    return None


def _postgresql() -> str | None:
    from pgserver import BINARIES, PG_LIB, find_binary

    absent = [n for n in BINARIES if find_binary(n) is None]
    if absent:
        return (
            f"PostgreSQL server binaries are not installed ({', '.join(absent)} neither on PATH"
            f" nor in {PG_LIB}/<version>/bin; Debian package: postgresql)"
        )
    return None


def _bwrap() -> str | None:
    path = bwrap_path()
    if path is None:
        where = (
            f"AQ_BWRAP_BIN={os.environ['AQ_BWRAP_BIN']} is not executable"
            if os.environ.get("AQ_BWRAP_BIN")
            else "no bwrap on PATH"
        )
        return f"bubblewrap is not installed ({where}; Debian package: bubblewrap)"
    # Installed is not enough: a container may forbid the user namespaces bubblewrap needs.
    try:
        probe = subprocess.run(
            [path, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "true"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap at {path} does not run: {exc}"
    if probe.returncode != 0:
        first = (probe.stderr.strip().splitlines() or [f"exit {probe.returncode}"])[0]
        return f"bubblewrap at {path} cannot make a sandbox here: {first}"
    return None


TOOLS: dict[str, Callable[[], str | None]] = {"chromium": _chromium, "postgresql": _postgresql, "bwrap": _bwrap}


@cache
def _missing_cached(tool: str, env_key: tuple[str | None, ...]) -> str | None:
    return TOOLS[tool]()


def missing(tool: str) -> str | None:
    """Return why ``tool`` cannot be used here, or None when it can."""
    if tool not in TOOLS:
        raise pytest.UsageError(f"requires({tool!r}): unknown tool; known: {', '.join(sorted(TOOLS))}")
    # The answer depends on PATH (and AQ_BWRAP_BIN): cache per environment, not once per session.
    return _missing_cached(tool, (os.environ.get("PATH"), os.environ.get("AQ_BWRAP_BIN")))


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require(*tools: str) -> None:
    """Skip the running test (fail it under ``CI=true``) unless every tool is there."""
    for tool in tools:
        reason = missing(tool)
        if reason is None:
            continue
        if in_ci():
            pytest.fail(f"CI=true and {tool} is missing: {reason}", pytrace=False)
        pytest.skip(f"needs {tool}: {reason}; {HINT}")


# -- the pytest plugin ---------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "requires(*tools): needs chromium, postgresql or bwrap (skipped when missing; failed under CI=true)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A skip mark, not a skip raised here: the summary then names the test's own file and line.
    for item in items:
        tools = _marked_tools(item)
        if in_ci():
            continue  # pytest_runtest_setup fails the test instead
        for tool in tools:
            reason = missing(tool)
            if reason is not None:
                item.add_marker(pytest.mark.skip(reason=f"needs {tool}: {reason}; {HINT}"))
                break


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # tryfirst: decided before any fixture starts (a PostgreSQL server, a browser).
    if in_ci():
        require(*_marked_tools(item))


def _marked_tools(item: pytest.Item) -> list[str]:
    tools = []
    for mark in item.iter_markers("requires"):
        if not mark.args:
            raise pytest.UsageError(f"{item.nodeid}: requires() names no tool")
        tools += mark.args
    return tools

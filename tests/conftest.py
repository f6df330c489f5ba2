"""Shared test set-up: every test gets its own queue root, git identity and home; tests that need a
system tool say so with ``@pytest.mark.requires(...)`` (``tests/requires.py``)."""

from __future__ import annotations

import os

import pytest
import requires


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(requires, "aq-requires")


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AGENT_QUEUE_ROOT", str(home / ".aq"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for key, value in {
        "GIT_AUTHOR_NAME": "aq tests",
        "GIT_AUTHOR_EMAIL": "tests@aq.invalid",
        "GIT_COMMITTER_NAME": "aq tests",
        "GIT_COMMITTER_EMAIL": "tests@aq.invalid",
    }.items():
        monkeypatch.setenv(key, value)

"""Shared test set-up: every test gets its own queue root, git identity and home; tests that need a
system tool say so with ``@pytest.mark.requires(...)`` (``tests/requires.py``); PostgreSQL tests take
``pg_server`` (one server a session), ``new_db`` (a fresh database a test), ``pg_store`` and ``pg_pair``
from here."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requires
from pgserver import NewDb, PgServer, open_store, start_server


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


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One PostgreSQL server for the whole session (skipped when its binaries are absent; failed under CI=true).

    Tests that stop, crash or reconfigure a server start one of their own (``PgServer(...).start()``)."""
    requires.require("postgresql")
    server = start_server()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def new_db(pg_server: PgServer) -> NewDb:
    """Make an empty database with the aq schema; return its URL (``lease=`` seconds if given, ``init=False``:
    no schema)."""
    from aq_core.store_pg import init_schema

    def make(lease: float | None = None, init: bool = True) -> str:
        name = pg_server.create_database()
        url = pg_server.url(name) if lease is None else pg_server.url(name, lease=lease)
        if init:
            init_schema(url)
        return url

    return make


@pytest.fixture
def pg_store(new_db: NewDb, tmp_path: Path) -> Iterator:
    """A store on a fresh database, closed after the test."""
    store = open_store(new_db(), tmp_path / "local")
    yield store
    store.close()


@pytest.fixture
def pg_pair(new_db: NewDb, tmp_path: Path) -> Iterator[tuple]:
    """(url, a store, another store: two hosts) on one fresh database, closed after the test."""
    url = new_db()
    store, other = open_store(url, tmp_path / "a"), open_store(url, tmp_path / "b")
    yield url, store, other
    store.close()
    other.close()

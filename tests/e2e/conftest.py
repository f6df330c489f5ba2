"""Fixtures of the end-to-end suite: the scripted model server and the real engine CLIs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e import clis
from e2e.model_server import ModelServer


@pytest.fixture(autouse=True)
def _own_tmpdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real CLIs' temp files (gemini's error reports, the libraries opencode's runtime unpacks) go to
    the test's own dir, not the machine's /tmp, where each run left them. Only here: a PostgreSQL server a
    test starts as another user could not enter a dir under the test's own."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))


@pytest.fixture
def model_server() -> Iterator[ModelServer]:
    """A started scripted model server with the default script; tests change its attributes as they need."""
    with ModelServer(canary="CANARY-e2e-5b1f") as server:
        yield server


@pytest.fixture
def real_cli():
    """``real_cli(name)``: the path of the pinned real CLI, installed into the shared cache on first use; the test
    is skipped, with the reason, when it cannot be installed (no registry, no npm)."""

    def get(name: str) -> str:
        try:
            return str(clis.executable(name))
        except clis.Unavailable as err:
            pytest.skip(f"real {name} CLI {clis.CLIS[name].version} unavailable: {err}")

    return get

"""Fixtures of the end-to-end suite: the scripted model server and the real engine CLIs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from e2e.model_server import ModelServer


@pytest.fixture
def model_server() -> Iterator[ModelServer]:
    """A started scripted model server with the default script; tests change its attributes as they need."""
    with ModelServer(canary="CANARY-e2e-5b1f") as server:
        yield server

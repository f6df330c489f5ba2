"""Pin the host zone for aq-opencode tests: reset phrases are read in the host's local zone."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _utc_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")

"""Pin the host zone for aq-qwen tests, so the golden reset times hold on any machine."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _utc_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")

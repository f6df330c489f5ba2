"""Pin the host zone for aq-codex tests: Codex prints absolute reset times in the host's local zone."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _utc_host(monkeypatch: pytest.MonkeyPatch) -> None:
    # aq_core.reset_time reads TZ on every call, so the golden reset_at values hold on any machine.
    monkeypatch.setenv("TZ", "UTC")

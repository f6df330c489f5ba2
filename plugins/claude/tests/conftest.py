"""Test set-up for aq-claude: a fixed host zone, so reset times printed without a zone are reproducible."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _utc_host(monkeypatch: pytest.MonkeyPatch) -> None:
    # "Your limit will reset at 12am." carries no zone: aq reads it in the host's zone (TZ, then /etc/localtime).
    monkeypatch.setenv("TZ", "UTC")

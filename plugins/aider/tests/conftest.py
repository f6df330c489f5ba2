"""Pin the host zone for aq-opencode tests: reset phrases are read in the host's local zone."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _utc_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")


@pytest.fixture(autouse=True)
def _a_model_source(monkeypatch: pytest.MonkeyPatch) -> None:
    # aq refuses to start aider with no model and no key (aider would wait 5 minutes for a browser login):
    # the contract kit's jobs have no model, so a key stands in for the user's.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-contract-test")

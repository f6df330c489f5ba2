"""Test set-up for the Copilot plugin: a fixed time zone and an environment without the user's Copilot settings."""

from __future__ import annotations

import pytest

_USER_VARS = (
    "AQ_COPILOT_BIN",
    "AQ_COPILOT_OTEL",
    "COPILOT_ALLOW_ALL",
    "COPILOT_MODEL",
    "COPILOT_OTEL_ENABLED",
    "COPILOT_OTEL_EXPORTER_TYPE",
    "COPILOT_OTEL_FILE_EXPORTER_PATH",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)


@pytest.fixture(autouse=True)
def _copilot_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Reset times printed without a zone are read in the host's zone: pin it so golden values hold anywhere.
    monkeypatch.setenv("TZ", "UTC")
    for name in _USER_VARS:
        monkeypatch.delenv(name, raising=False)

"""The aq contract test kit, run against the opencode plugin and its golden fixtures."""

from __future__ import annotations

from pathlib import Path

from aq_core.testing import EngineContract


class TestOpencodeContract(EngineContract):
    engine = "opencode"
    fixtures = Path(__file__).parent / "fixtures"
    min_fixtures = 10

"""The aq contract test kit, run against the qwen plugin and its golden fixtures."""

from __future__ import annotations

from pathlib import Path

from aq_core.testing import EngineContract


class TestQwenContract(EngineContract):
    engine = "qwen"
    fixtures = Path(__file__).parent / "fixtures"
    min_fixtures = 10

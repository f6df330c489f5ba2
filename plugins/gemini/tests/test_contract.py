"""The aq contract test kit, run against the gemini plugin and its golden fixtures."""

from __future__ import annotations

from pathlib import Path

from aq_core.testing import EngineContract


class TestGeminiContract(EngineContract):
    engine = "gemini"
    fixtures = Path(__file__).parent / "fixtures"
    min_fixtures = 12

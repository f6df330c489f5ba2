"""The aq contract test kit, run against the codex plugin and its golden fixtures."""

from __future__ import annotations

from pathlib import Path

from aq_core.testing import EngineContract


class TestCodexContract(EngineContract):
    engine = "codex"
    fixtures = Path(__file__).parent / "fixtures"
    min_fixtures = 20

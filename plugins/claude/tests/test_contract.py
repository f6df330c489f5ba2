"""The aq contract kit, run against the claude engine and its golden fixtures."""

from __future__ import annotations

from pathlib import Path

from aq_core.testing import EngineContract


class TestClaudeContract(EngineContract):
    engine = "claude"
    fixtures = Path(__file__).parent / "fixtures"
    has_executable = True
    supports_yolo = True
    supports_model = True
    prompt_in_argv = False
    min_fixtures = 30

"""The aq contract test kit, run against the aider plugin and its golden fixtures."""

from __future__ import annotations

from pathlib import Path

from aq_core.testing import EngineContract


class TestAiderContract(EngineContract):
    engine = "aider"
    fixtures = Path(__file__).parent / "fixtures"
    min_fixtures = 10
    # aider has no permission mode: it applies its edits (that is what it is for) and never runs a shell command
    # headless (``--yes-always`` answers "no" to commands, which need an explicit yes). yolo changes nothing.
    supports_yolo = False

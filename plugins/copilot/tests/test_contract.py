"""The Copilot plugin passes the contract kit every engine plugin runs against itself."""

from pathlib import Path

from aq_core.testing import EngineContract


class TestCopilotContract(EngineContract):
    engine = "copilot"
    fixtures = Path(__file__).parent / "fixtures"
    min_fixtures = 20

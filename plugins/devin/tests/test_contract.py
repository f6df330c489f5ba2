"""The devin engine passes the contract kit every engine plugin runs."""

from pathlib import Path

from aq_core.testing import EngineContract


class TestDevinContract(EngineContract):
    engine = "devin"
    fixtures = Path(__file__).parent / "fixtures"
    has_executable = True
    supports_yolo = True
    supports_model = True
    prompt_in_argv = False
    min_fixtures = 20

"""The built-in command engine passes the same contract kit as every engine plugin."""

from pathlib import Path

from aq_core.testing import EngineContract


class TestCommandContract(EngineContract):
    engine = "command"
    fixtures = Path(__file__).parent / "fixtures_command"
    has_executable = False
    job_fields = {"command": ("my-agent", "--flag")}

"""The contract kit must catch a broken plugin: run it, with pytester, against one that breaks the rules."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

BROKEN_PLUGIN = """
from pathlib import Path
from aq_core.engine import Engine, Failure, LaunchSpec
from aq_core.hookspecs import hookimpl
from aq_core.usage import Usage


class Broken:
    @hookimpl
    def register_engines(self):
        return [Engine(name="broken", binary="broken", state_dirs=("~", "/", "relative/dir"))]

    @hookimpl
    def launch(self, engine, ctx):
        if engine != "broken":
            return None
        # Three faults: the prompt in argv, the override ignored, no error when not installed.
        return LaunchSpec(argv=["broken", "-p", ctx.job.prompt])

    @hookimpl
    def parse_usage(self, engine, log_path):
        if engine != "broken":
            return None
        text = Path(log_path).read_bytes()  # not streamed, and it raises on a missing file
        return Usage(tokens_in=0, tokens_out=len(text), cost_usd=-1.0)  # invented figures

    @hookimpl
    def classify_failure(self, engine, outcome):
        if engine != "broken":
            return None
        return Failure("mystery")  # not a declared class
"""

TEST_FILE = """
from pathlib import Path

import pytest

from aq_core import plugins
from aq_core.testing import EngineContract

import broken_plugin


@pytest.fixture(autouse=True, scope="module")
def _registered():
    pm = plugins.plugin_manager()
    plugin = broken_plugin.Broken()
    pm.register(plugin, name="broken-test-plugin")
    plugins._engines.cache_clear()
    plugins._all_engines.cache_clear()
    yield
    pm.unregister(plugin)
    plugins._engines.cache_clear()
    plugins._all_engines.cache_clear()


class TestBrokenContract(EngineContract):
    engine = "broken"
    fixtures = Path(__file__).parent / "fixtures"
"""


def test_the_kit_fails_a_plugin_that_breaks_the_contract(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(broken_plugin=BROKEN_PLUGIN)
    pytester.makepyfile(test_broken=TEST_FILE)
    fixtures = pytester.mkdir("fixtures")
    (fixtures / "run.log").write_text("some output" + chr(10))
    (fixtures / "run.expected.json").write_text('{"usage": {}}')
    result = pytester.runpytest_inprocess("-q", "-rf", "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 5, result.stdout.str()
    failed = [line for line in result.stdout.lines if line.startswith("FAILED")]
    for name in (
        "test_prompt_never_in_argv",
        "test_executable_override_is_honoured",
        "test_not_installed_is_one_clear_error",
        "test_golden_usage",
        "test_classify_returns_a_known_class",
        "test_state_dirs_are_safe_to_make_writable",
    ):
        assert any(f"::{name}" in line for line in failed), f"the kit did not fail {name}"

"""Copilot's --usage-output-file side file: where aq asks for it, and how its figures replace the log's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from aq_copilot.usage_file import side_file

from aq_core import plugins
from aq_core.engine import LaunchContext
from aq_core.testing import make_job

FIXTURES = Path(__file__).parent / "fixtures"
HELP = (Path(__file__).parent / "copilot-1.0.102-help.txt").read_text()


def test_the_usage_file_is_asked_for_beside_the_attempt_log(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "job.1.log"
    ctx = LaunchContext(
        job=make_job("copilot", tmp_path),
        attempt=1,
        executable="/opt/copilot",
        workdir=tmp_path,
        prompt_file=tmp_path / "p",
        log_path=log,
    )
    argv = plugins.launch("copilot", ctx).argv
    assert argv[-1] == f"--usage-output-file={log}.usage.json"
    assert "--usage-output-file <file>" in HELP


def test_its_figures_are_session_totals_with_cache_writes(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    shutil.copy(FIXTURES / "realcli-byok-usage-file.log", log)
    doc = json.loads((FIXTURES / "realcli-byok-usage-file.log.usage.json").read_text())
    doc["modelMetrics"]["claude-sonnet-4.5"] = {
        "requests": {"count": 2, "cost": 1},
        "usage": {"inputTokens": 5000, "outputTokens": 300, "cacheReadTokens": 4000, "cacheWriteTokens": 700},
    }
    side_file(log).write_text(json.dumps(doc))
    usage = plugins.parse_usage("copilot", log)
    assert (usage.tokens_in, usage.tokens_cached, usage.tokens_out) == (6234, 5000, 356)
    assert usage.extra["tokens_cache_write"] == 700 and usage.extra["model_calls"] == 3
    assert usage.extra["session_cumulative"] is True and usage.extra["tokens_source"] == "usage-output-file"


def test_a_missing_or_broken_usage_file_leaves_the_log_figures(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    shutil.copy(FIXTURES / "real-json-otel-tool.log", log)
    from_log = plugins.parse_usage("copilot", log).figures()
    assert from_log.get("tokens_in")  # the OTel spans in the log
    for junk in ("", "{not json", "[]", '{"modelMetrics": {"m": {"usage": "x"}}}', '{"modelMetrics": []}'):
        side_file(log).write_text(junk)
        assert plugins.parse_usage("copilot", log).figures() == from_log

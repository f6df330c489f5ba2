"""The `result` fields Claude Code 2.1.328 added, read from logs the real CLI printed against aq's scripted model."""

from __future__ import annotations

import json
from pathlib import Path

from aq_claude.usage import parse_log

FIXTURES = Path(__file__).parent / "fixtures"


def test_why_the_run_ended_is_kept() -> None:
    usage = parse_log(FIXTURES / "rate-2.1.328-api-error-429-stream.log")
    assert usage.extra["terminal_reason"] == "api_error"
    assert usage.extra["api_error_status"] == 429 and usage.extra["api_error_type"] == "rate_limit_error"
    done = parse_log(FIXTURES / "mock-2.1.328-success-write-stream.log")
    assert done.extra["terminal_reason"] == "completed" and "api_error_status" not in done.extra


def test_without_a_session_total_the_per_model_costs_are_the_cost(tmp_path: Path) -> None:
    lines = (FIXTURES / "mock-2.1.328-success-write-stream.log").read_text().splitlines()
    edited = []
    for line in lines:
        obj = json.loads(line) if line.startswith("{") else None
        if obj and obj.get("type") == "result":
            obj.pop("total_cost_usd")
            obj["modelUsage"]["claude-haiku-4-5"] = {"inputTokens": 10, "outputTokens": 2, "costUSD": 0.00002}
            line = json.dumps(obj)
        edited.append(line)
    log = tmp_path / "a.log"
    log.write_text("\n".join(edited) + "\n")
    assert parse_log(log).cost_usd == 0.00839  # 0.00837 (claude-sonnet-4-5) + 0.00002 (claude-haiku-4-5)

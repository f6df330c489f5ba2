"""Gemini CLI's stream-json usage (thinking tokens from total_tokens, several processes) and its failure texts."""

from __future__ import annotations

import json
from pathlib import Path

from aq_gemini.failure import classify
from aq_gemini.usage import parse

from aq_core.engine import Outcome

FIXTURES = Path(__file__).parent / "fixtures"


def result(total: int, prompt: int, out: int, cached: int, model: str = "gemini-2.5-pro", tools: int = 0) -> str:
    stats = {
        "total_tokens": total,
        "input_tokens": prompt,
        "output_tokens": out,
        "cached": cached,
        "input": prompt - cached,
    }
    stats |= {"tool_calls": tools, "models": {model: dict(stats)}}
    return json.dumps({"type": "result", "status": "success", "stats": stats})


def test_thoughts_count_as_output_and_processes_add_up(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    init = '{"type":"init","session_id":"s-1","model":"auto"}'
    init2 = '{"type":"init","session_id":"s-2","model":"gemini-2.5-pro"}'
    log.write_text("\n".join([init, result(1100, 1000, 60, 400, tools=2), init2, result(530, 500, 10, 100), ""]))
    usage = parse(log)
    assert usage.figures() == {
        "model": "gemini-2.5-pro",
        "tokens_in": 1500,
        "tokens_cached": 500,
        "tokens_out": 130,
        "tool_calls": 2,
    }
    assert usage.extra["tokens_thoughts"] == 60 and usage.extra["session_id"] == "s-2"


def test_killed_before_the_result_reports_nothing(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text('{"type":"init","session_id":"s-1","model":"gemini-2.5-flash"}\n{"type":"message","role":"user"}\n')
    usage = parse(log)
    assert usage.figures() == {"model": "gemini-2.5-flash"} and usage.extra["complete"] is False


def test_a_quoted_quota_message_in_a_successful_run_is_not_a_limit(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    text = {"type": "message", "role": "assistant", "content": "RESOURCE_EXHAUSTED: Please retry in 30s"}
    log.write_text(json.dumps(text) + "\n" + result(10, 5, 5, 0) + "\n")
    assert classify(Outcome(exit_code=0, timed_out=False, log_path=log, finished_at=0.0)) is None


def test_the_daily_quota_wait_comes_from_the_printed_cause() -> None:
    failure = classify(
        Outcome(exit_code=1, timed_out=False, log_path=FIXTURES / "limit-daily-quota-429.log", finished_at=100.0)
    )
    assert failure.cls == "usage_limit" and failure.reset_at == 100.0 + 10800
    assert failure.detail == "gemini: You have exhausted your daily quota on this model."


def test_a_plan_quota_with_its_reset_is_a_usage_limit(tmp_path: Path) -> None:
    # The form Gemini CLI prints for a Google-login plan (Code Assist) whose quota window is spent.
    error = "[API Error: You have exhausted your capacity on this model. Your quota will reset after 1h30m5s.]"
    log = tmp_path / "a.log"
    record = {"type": "result", "status": "error", "error": {"type": "unknown", "message": error}}
    log.write_text('{"type":"init","session_id":"s","model":"gemini-2.5-pro"}\n' + json.dumps(record) + "\n")
    failure = classify(Outcome(exit_code=1, timed_out=False, log_path=log, finished_at=1000.0))
    assert failure.cls == "usage_limit" and failure.reset_at == 1000.0 + 5405

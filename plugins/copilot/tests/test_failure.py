"""Failure classes beyond the golden fixtures: exit codes, timeouts, stale resets, print times."""

from __future__ import annotations

from pathlib import Path

from aq_core import plugins
from aq_core.engine import Outcome

T0 = 1_776_470_400.0  # 2026-04-18T00:00:00Z
RATE = (
    "Sorry, you've hit a rate limit that restricts the number of Copilot model requests you can make within a "
    "specific time period. Please try again in 2 hours."
)


def classify(tmp_path: Path, text: str, exit_code: int | None = 1, timed_out: bool = False, finished_at: float = T0):
    log = tmp_path / "attempt.log"
    log.write_text(text)
    return plugins.classify_failure("copilot", Outcome(exit_code, timed_out, log, finished_at))


def error_event(message: str, timestamp: str = "2026-04-17T23:00:00.000Z", **data: object) -> str:
    import json

    body = {"errorType": "rate_limit", "message": message, "statusCode": 429, **data}
    event = {"type": "session.error", "data": body, "id": "e", "timestamp": timestamp}
    return json.dumps(event, separators=(",", ":")) + "\n"  # compact, as the CLI writes it


def test_a_relative_wait_counts_from_the_events_timestamp(tmp_path: Path) -> None:
    text = error_event(RATE) + '{"type":"result","sessionId":"s","exitCode":1}\n'
    failure = classify(tmp_path, text)
    assert failure.cls == "usage_limit"
    assert failure.reset_at == T0 - 3600 + 7200


def test_a_short_wait_is_a_rate_limit(tmp_path: Path) -> None:
    failure = classify(tmp_path, error_event(RATE.replace("2 hours", "10 minutes"), "2026-04-18T00:00:00Z"))
    assert (failure.cls, failure.reset_at) == ("rate_limited", T0 + 600)


def test_weekly_error_code_is_a_usage_limit_even_without_a_time(tmp_path: Path) -> None:
    failure = classify(tmp_path, error_event("429 Too Many Requests", errorCode="user_weekly_rate_limited"))
    assert (failure.cls, failure.reset_at) == ("usage_limit", None)


def test_quota_error_type(tmp_path: Path) -> None:
    text = error_event("Quota exceeded", errorType="quota", errorCode="quota_exceeded", statusCode=402)
    assert classify(tmp_path, text).cls == "usage_limit"


def test_authentication_error_type(tmp_path: Path) -> None:
    text = error_event("Authentication failed", errorType="authentication", statusCode=401)
    assert classify(tmp_path, text).cls == "auth_error"


def test_a_limit_the_cli_recovered_from_is_no_failure(tmp_path: Path) -> None:
    # e.g. it switched to auto mode after the rate limit and finished the task
    text = error_event(RATE) + '{"type":"result","sessionId":"s","exitCode":0}\n'
    assert classify(tmp_path, text, exit_code=0).cls == "ok"


def test_a_timeout_stays_a_timeout(tmp_path: Path) -> None:
    assert classify(tmp_path, error_event(RATE), exit_code=-15, timed_out=True).cls == "timeout"


def test_a_reset_already_past_is_dropped(tmp_path: Path) -> None:
    text = "You've reached your weekly rate limit. Please wait for your limit to reset on April 1, 2026 at 2:00 AM.\n"
    failure = classify(tmp_path, text)
    assert (failure.cls, failure.reset_at) == ("usage_limit", None)


def test_unknown_exit_code_with_a_limit_message(tmp_path: Path) -> None:
    failure = classify(tmp_path, "429 rate limit exceeded\n", exit_code=None)
    assert (failure.cls, failure.reset_at) == ("rate_limited", None)


def test_a_non_limit_failure_is_left_to_the_core(tmp_path: Path) -> None:
    assert classify(tmp_path, "Error: something else broke\n").cls == "crash"


def test_the_detail_is_one_short_line(tmp_path: Path) -> None:
    failure = classify(tmp_path, RATE + "\n" + "x" * 500 + "\n")
    assert failure.detail and "\n" not in failure.detail and len(failure.detail) <= 220

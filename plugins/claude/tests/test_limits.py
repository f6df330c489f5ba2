"""classify_failure beyond the golden files: what must not count, which record wins, where resets come from."""

from __future__ import annotations

import json
from pathlib import Path

import aq_claude
import pytest

from aq_core import plugins
from aq_core.engine import Outcome

NOW = 1783103400.0  # 2026-07-03 14:30 in New York
SID = "c1d2e3f4-aaaa-4bbb-8ccc-dddddddddddd"
SESSION_LIMIT = "You've hit your session limit · resets 8pm (America/New_York)"


def dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def write(tmp_path: Path, *lines) -> Path:
    path = tmp_path / "run.log"
    path.write_text("".join((line if isinstance(line, str) else dumps(line)) + "\n" for line in lines))
    return path


def classify(log: Path, exit_code: int | None = 1, timed_out: bool = False, now: float = NOW):
    return plugins.classify_failure("claude", Outcome(exit_code, timed_out, log, now))


def init(session=SID):
    return {
        "type": "system",
        "subtype": "init",
        "session_id": session,
        "model": "claude-sonnet-4-5",
        "claude_code_version": "2.1.197",
    }


def error_frame(text, error="rate_limit", parent=None):
    message = {"id": "e1", "model": "<synthetic>", "role": "assistant", "content": [{"type": "text", "text": text}]}
    return {"type": "assistant", "message": message, "parent_tool_use_id": parent, "session_id": SID, "error": error}


def result(text="Done.", is_error=False, subtype="success", **more):
    return {
        "type": "result",
        "subtype": subtype,
        "is_error": is_error,
        "num_turns": 1,
        "result": text,
        "session_id": SID,
        **more,
    }


def event(status="rejected", resets_at=1783123200, kind="five_hour"):
    return {
        "type": "rate_limit_event",
        "rate_limit_info": {"status": status, "resetsAt": resets_at, "rateLimitType": kind},
    }


def test_a_success_with_warnings_and_quotes_is_not_a_failure(tmp_path: Path) -> None:
    log = write(
        tmp_path,
        init(),
        event("allowed_warning"),
        event("allowed"),
        {"type": "user", "message": {"content": [{"type": "tool_result", "content": SESSION_LIMIT}]}},
        result(f"The old banner read: {SESSION_LIMIT}"),
    )
    assert classify(log, exit_code=0).cls == "ok"
    assert classify(log, exit_code=1).cls == "crash"  # the core's answer: the engine's records say success


def test_a_plain_limit_line_counts_only_when_the_cli_stopped_on_its_own(tmp_path: Path) -> None:
    log = write(tmp_path, SESSION_LIMIT)
    assert classify(log, exit_code=1).cls == "usage_limit"
    assert classify(log, exit_code=0).cls == "ok"
    assert classify(log, exit_code=-9).cls == "crash"
    assert classify(log, exit_code=None).cls == "crash"
    assert classify(log, exit_code=-15, timed_out=True).cls == "timeout"


def test_a_quoted_or_indented_line_is_not_the_cli_speaking(tmp_path: Path) -> None:
    for line in (f"> {SESSION_LIMIT}", f"The message was: {SESSION_LIMIT}", f"`{SESSION_LIMIT}`"):
        assert classify(write(tmp_path, line)).cls == "crash", line


def test_the_interactive_prefix_is_tolerated(tmp_path: Path) -> None:
    assert classify(write(tmp_path, "  \u23bf  API Error: Rate limit reached")).cls == "rate_limited"


def test_the_rate_limit_event_gives_the_exact_reset(tmp_path: Path) -> None:
    log = write(tmp_path, init(), event(resets_at=1783123260), error_frame(SESSION_LIMIT), result(SESSION_LIMIT, True))
    failure = classify(log)
    assert failure.cls == "usage_limit"
    assert failure.reset_at == 1783123260.0


def test_a_reset_in_milliseconds_or_a_stale_one(tmp_path: Path) -> None:
    ms = write(
        tmp_path, init(), event(resets_at=1783123260000), error_frame(SESSION_LIMIT), result(SESSION_LIMIT, True)
    )
    assert classify(ms).reset_at == 1783123260.0
    stale = write(tmp_path, init(), event(resets_at=1000), error_frame(SESSION_LIMIT), result(SESSION_LIMIT, True))
    assert classify(stale).reset_at == 1783123200.0  # from the text: 8pm in New York


def test_a_rejected_plan_window_turns_a_429_into_a_usage_limit(tmp_path: Path) -> None:
    log = write(
        tmp_path,
        init(),
        event(kind="seven_day"),
        error_frame("API Error: Request rejected (429)"),
        result("API Error: Request rejected (429)", True, api_error_status=429),
    )
    failure = classify(log)
    assert (failure.cls, failure.reset_at) == ("usage_limit", 1783123200.0)


def test_a_rate_limit_without_a_plan_window_is_a_throttle(tmp_path: Path) -> None:
    text = "API Error: Request rejected (429) · Rate limited. Please try again later."
    log = write(tmp_path, init(), error_frame(text), result(text, True, api_error_status=429))
    failure = classify(log)
    assert (failure.cls, failure.reset_at) == ("rate_limited", None)


def test_a_relative_wait_counts_from_the_end_of_the_run(tmp_path: Path) -> None:
    text = "API Error: Rate limit reached · try again in 30 seconds"
    log = write(tmp_path, init(), error_frame(text), result(text, True))
    assert classify(log).reset_at == NOW + 30


def test_a_subagent_error_is_not_the_run_ending(tmp_path: Path) -> None:
    log = write(tmp_path, init(), error_frame(SESSION_LIMIT, parent="toolu_1"), result("Done anyway."))
    assert classify(log, exit_code=0).cls == "ok"
    killed = write(tmp_path, init(), error_frame(SESSION_LIMIT, parent="toolu_1"))
    assert classify(killed, exit_code=-15, timed_out=True).cls == "timeout"


def test_an_error_frame_without_a_result_decides(tmp_path: Path) -> None:
    log = write(tmp_path, init(), error_frame("Not logged in · Please run /login", "authentication_failed"))
    assert classify(log, exit_code=-15, timed_out=True).cls == "auth_error"


def test_only_the_last_process_of_a_log_counts(tmp_path: Path) -> None:
    log = write(tmp_path, init(), error_frame(SESSION_LIMIT), result(SESSION_LIMIT, True), init(), result("Done."))
    assert classify(log, exit_code=0).cls == "ok"
    log = write(tmp_path, init(), result("Done."), init(), error_frame(SESSION_LIMIT), result(SESSION_LIMIT, True))
    assert classify(log).cls == "usage_limit"


def test_a_limit_message_names_the_window_not_the_login_hint(tmp_path: Path) -> None:
    text = "You've hit your session limit · resets 5:40pm (Europe/Berlin)\n/login to switch to an API usage-billed account."
    log = write(tmp_path, init(), error_frame(text), result(text, True))
    assert classify(log).cls == "usage_limit"


def test_an_unknown_error_is_left_to_the_core(tmp_path: Path) -> None:
    log = write(
        tmp_path, init(), error_frame("Prompt is too long", "invalid_request"), result("Prompt is too long", True)
    )
    assert classify(log).cls == "crash"
    assert aq_claude.classify_failure(engine="claude", outcome=Outcome(1, False, log, NOW)) is None


def test_a_zoneless_reset_is_read_in_the_host_zone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = write(tmp_path, "Claude usage limit reached. Your limit will reset at 12am.")
    now = 1752609600.0  # 2025-07-15 20:00 UTC = 16:00 in New York
    assert classify(log, now=now).reset_at == 1752624000.0  # midnight UTC (the tests pin TZ=UTC)
    monkeypatch.setenv("TZ", "America/New_York")
    assert classify(log, now=now).reset_at == 1752638400.0  # midnight in New York = 04:00 UTC


def test_the_legacy_pipe_epoch_form(tmp_path: Path) -> None:
    # Older builds (e.g. anthropics/claude-code#1328, #3169) print the reset as epoch seconds after a pipe.
    from aq_claude.limits import _printed_reset

    assert _printed_reset("Claude AI usage limit reached|1751652000", NOW) == 1751652000.0
    assert _printed_reset("Error: Claude AI usage limit reached|1748268000\n", NOW) == 1748268000.0
    assert _printed_reset("Claude AI usage limit reached|1748268000123", NOW) == 1748268000.123
    failure = classify(write(tmp_path, "Claude AI usage limit reached|1783123200"))
    assert (failure.cls, failure.reset_at) == ("usage_limit", 1783123200.0)


def test_other_engines_and_unreadable_logs(tmp_path: Path) -> None:
    outcome = Outcome(1, False, tmp_path / "missing.log", NOW)
    assert aq_claude.classify_failure(engine="codex", outcome=outcome) is None
    assert aq_claude.classify_failure(engine="claude", outcome=outcome) is None


@pytest.mark.parametrize(
    ("line", "cls"),
    [
        ("You've reached your Fable 5 limit.", "usage_limit"),
        ("You\u2019ve hit your Opus limit · resets Sep 15 at 7pm", "usage_limit"),
        ("Your org is out of usage · contact your admin", "usage_limit"),
        ("You're out of usage credits · resets 9pm", "usage_limit"),
        ("Invalid API key · Please run /login", "auth_error"),
        ("Failed to authenticate. API Error: 401 Invalid bearer token", "auth_error"),
        (
            'API Error: 429 {"type":"error","error":{"type":"rate_limit_error","message":"Number of requests has exceeded your per-minute rate limit"}}',
            "rate_limited",
        ),
        ("API Error: Repeated 529 Overloaded errors", "rate_limited"),
        (
            "Error: Input must be provided either through stdin or as a prompt argument when using --print",
            "config_error",
        ),
        ("You're close to your usage limit", "crash"),
        ("You've used 90% of your weekly limit · resets Sep 15", "crash"),
    ],
)
def test_plain_messages(tmp_path: Path, line: str, cls: str) -> None:
    assert classify(write(tmp_path, line)).cls == cls


def test_a_missing_session_tells_the_core_to_start_a_new_one() -> None:
    from pathlib import Path

    from aq_core import plugins
    from aq_core.engine import Outcome

    log = Path(__file__).parent / "fixtures" / "realcli-resume-not-found.log"
    failure = plugins.classify_failure("claude", Outcome(exit_code=1, timed_out=False, log_path=log, finished_at=1e9))
    assert failure.cls == "crash" and failure.session_lost

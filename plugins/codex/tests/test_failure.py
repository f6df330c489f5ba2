"""classify_failure beyond the golden files: wordings, precedence, exit codes and where a message may come from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aq_codex.failure import classify, decisive_message

from aq_core import plugins
from aq_core.engine import Outcome

NOW = 1_782_000_000.0  # 2026-06-21T00:00:00Z
TID = "019fb0a1-2c3d-7e4f-8a9b-0c1d2e3f4a5b"


def j(obj: dict) -> str:
    return json.dumps(obj, separators=(",", ":"))


def json_log(tmp_path: Path, message: str, *extra: str) -> Path:
    path = tmp_path / "run.log"
    lines = [
        j({"type": "thread.started", "thread_id": TID}),
        j({"type": "turn.started"}),
        *extra,
        j({"type": "error", "message": message}),
        j({"type": "turn.failed", "error": {"message": message}}),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def outcome(path: Path, exit_code: int | None = 1, timed_out: bool = False) -> Outcome:
    return Outcome(exit_code=exit_code, timed_out=timed_out, log_path=path, finished_at=NOW)


@pytest.mark.parametrize(
    "message, cls, reset",
    [
        # codex-rs/core/src/error.rs, each plan's wording
        ("You've hit your usage limit. Try again later.", "usage_limit", None),
        (
            "You've hit your usage limit. To get more access now, send a request to your admin or try again later.",
            "usage_limit",
            None,
        ),
        (
            "You've hit your usage limit. Upgrade to Plus to continue using Codex (https://openai.com/chatgpt/pricing).",
            "usage_limit",
            None,
        ),
        ("You’ve hit your usage limit. Try again in 2 hours.", "usage_limit", NOW + 7200),
        # Codex app wording (openai/codex#31567), same class
        ("You’re out of Codex messages. Your rate limit resets on Jul 12, 2026, 5:04 AM.", "usage_limit", 1783832640.0),
        (
            "stream disconnected before completion: You exceeded your current quota, please check your plan and "
            "billing details.",
            "usage_limit",
            None,
        ),
        # a rate-limit message whose numbers include 401 is still a rate limit
        (
            "Rate limit reached for gpt-5 in organization org-x on requests per min (RPM): Limit 3000, Used 3000, "
            "Requested 401. Please try again in 20ms.",
            "rate_limited",
            NOW + 0.02,
        ),
        ("exceeded retry limit, last status: 429 Too Many Requests", "rate_limited", None),
        ("exceeded retry limit, last status: 401 Unauthorized, request id: 9a5793386e39fede-SIN", "auth_error", None),
        ("unexpected status 401 Unauthorized: Missing bearer or basic authentication in header", "auth_error", None),
        ("unexpected status 401 Unauthorized: Incorrect API key provided: sk-abc***", "auth_error", None),
        (
            "Your access token could not be refreshed because your refresh token has expired. Please log out and sign "
            "in again.",
            "auth_error",
            None,
        ),
        # neither: the core's crash
        (
            "Access blocked by Cloudflare. This usually happens when connecting from a restricted region (status 403 "
            "Forbidden)",
            None,
            None,
        ),
        (
            "Codex ran out of room in the model's context window. Start a new conversation or clear earlier history "
            "before retrying.",
            None,
            None,
        ),
    ],
)
def test_wordings(tmp_path: Path, message: str, cls: str | None, reset: float | None) -> None:
    failure = classify(outcome(json_log(tmp_path, message)))
    if cls is None:
        assert failure is None
        return
    assert failure is not None and failure.cls == cls
    assert failure.reset_at == pytest.approx(reset) if reset is not None else failure.reset_at is None
    assert failure.detail and "\n" not in failure.detail and failure.detail.startswith("codex: ")


def test_absolute_reset_is_read_in_the_host_zone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = json_log(tmp_path, "You've hit your usage limit. Try again at Jul 5th, 2026 8:19 PM.")
    monkeypatch.setenv("TZ", "America/New_York")
    assert classify(outcome(path)).reset_at == 1783297140.0  # 2026-07-06T00:19:00Z


def test_exit_zero_and_timeout_are_left_to_the_core(tmp_path: Path) -> None:
    path = json_log(tmp_path, "You've hit your usage limit. Try again in 2 hours.")
    assert classify(outcome(path, exit_code=0)) is None
    assert classify(outcome(path, exit_code=-15, timed_out=True)) is None
    assert plugins.classify_failure("codex", outcome(path, exit_code=-15, timed_out=True)).cls == "timeout"
    assert classify(outcome(path, exit_code=-9)).cls == "usage_limit"
    assert classify(outcome(path, exit_code=None)).cls == "usage_limit"


def test_retry_notices_are_not_the_cause(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    notice = "Reconnecting... 3/5 (exceeded retry limit, last status: 429 Too Many Requests)"
    path.write_text(
        j({"type": "thread.started", "thread_id": TID}) + "\n" + j({"type": "error", "message": notice}) + "\n"
    )
    assert decisive_message(path) is None
    assert plugins.classify_failure("codex", outcome(path, exit_code=-9)).cls == "crash"


def test_turn_failed_wins_over_earlier_errors(tmp_path: Path) -> None:
    path = json_log(tmp_path, "exceeded retry limit, last status: 401 Unauthorized")
    text = path.read_text().replace(
        j({"type": "error", "message": "exceeded retry limit, last status: 401 Unauthorized"}),
        j({"type": "error", "message": "You've hit your usage limit. Try again later."}),
    )
    path.write_text(text)
    assert classify(outcome(path)).cls == "auth_error"


def test_legacy_json_error_event(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    lines = [
        j({"workdir": "/w", "model": "gpt-5", "provider": "openai", "approval": "never", "sandbox": "read-only"}),
        j({"prompt": "hi"}),
        j({"id": "0", "msg": {"type": "task_started"}}),
        j({"id": "0", "msg": {"type": "error", "message": "You've hit your usage limit. Try again in 45 minutes."}}),
    ]
    path.write_text("\n".join(lines) + "\n")
    failure = classify(outcome(path))
    assert failure.cls == "usage_limit" and failure.reset_at == NOW + 2700


def test_error_line_counts_only_at_the_end(tmp_path: Path) -> None:
    header = ["OpenAI Codex v0.171.0", "--------", "model: gpt-6.2-sol", "--------", "user", "hi"]
    quoted = [*header, "exec", "cat log in /w", " succeeded in 2ms:", "Error: 401 Unauthorized", "codex", "Read it."]
    path = tmp_path / "quoted.log"
    path.write_text("\n".join(quoted) + "\n")
    assert decisive_message(path) is None
    last = tmp_path / "last.log"
    last.write_text("\n".join([*header, "Error: Missing environment variable: `OPENAI_API_KEY`."]) + "\n")
    assert classify(outcome(last)).cls == "auth_error"


def test_unreadable_log_is_left_to_the_core(tmp_path: Path) -> None:
    assert classify(outcome(tmp_path / "missing.log")) is None
    binary = tmp_path / "bin.log"
    binary.write_bytes(b'\x00\xff{"type":"turn.failed"\n\xfe\n')
    assert classify(outcome(binary)) is None


def test_other_engines_get_no_answer(tmp_path: Path) -> None:
    from aq_codex import classify_failure

    assert classify_failure(engine="claude", outcome=outcome(json_log(tmp_path, "x"))) is None


def test_a_lost_thread_tells_the_core_to_start_a_new_session() -> None:
    from pathlib import Path

    from aq_core import plugins
    from aq_core.engine import Outcome

    log = Path(__file__).parent / "fixtures" / "resume_thread_lost.log"
    failure = plugins.classify_failure("codex", Outcome(exit_code=1, timed_out=False, log_path=log, finished_at=1e9))
    assert failure.cls == "crash" and failure.session_lost

"""aider's usage lines: display-rounded counts, several messages, the cost only when priced, the failure traps."""

from __future__ import annotations

from pathlib import Path

from aq_aider.failure import classify
from aq_aider.usage import parse

from aq_core.engine import Outcome

FIXTURES = Path(__file__).parent / "fixtures"
BANNER = "Aider v0.86.2\nMain model: anthropic/claude-sonnet-4-5 with diff edit format, infinite output\n\n"


def log(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "aider.log"
    path.write_text(text)
    return path


def test_suffixes_cache_fields_and_the_session_cost_of_the_last_message(tmp_path: Path) -> None:
    # Both cache fields printed: aider puts the cost on a line of its own (base_coder.py, sep = "\n").
    text = (
        BANNER
        + "Tokens: 9.6k sent, 1.2k cache write, 3.4k cache hit, 56 received.\n"
        + "Cost: $0.05 message, $0.05 session.\n"
        + "Applied edit to app.py\n"
        + "Tokens: 12k sent, 2.5M cache hit, 999 received. Cost: $0.16 message, $0.21 session.\n"
    )
    usage = parse(log(tmp_path, text))
    assert usage.figures() == {
        "model": "anthropic/claude-sonnet-4-5",
        "tokens_in": 9_600 + 12_000,
        "tokens_cached": 9_600 + 12_000,  # never above tokens_in, whatever the rounding did
        "tokens_out": 56 + 999,
        "turns": 2,
        "cost_usd": 0.21,
    }
    assert usage.extra == {"tokens_cache_write": 1_200, "tokens_rounded": True, "edits_applied": 1}


def test_exact_counts_below_a_thousand_are_not_marked_rounded(tmp_path: Path) -> None:
    usage = parse(log(tmp_path, BANNER + "Tokens: 734 sent, 56 received. Cost: $0.0020 message, $0.0020 session.\n"))
    assert (usage.tokens_in, usage.tokens_out, usage.cost_usd) == (734, 56, 0.002)
    assert usage.extra["tokens_rounded"] is False


def test_a_usage_line_quoted_in_the_answer_does_not_count(tmp_path: Path) -> None:
    usage = parse(log(tmp_path, BANNER + "  Tokens: 5k sent, 5 received.\n> Tokens: 1k sent, 1 received.\n"))
    assert usage.tokens_in is None and usage.turns is None


def test_exit_0_after_a_failed_model_call_is_a_failure() -> None:
    failure = classify(
        Outcome(exit_code=0, timed_out=False, log_path=FIXTURES / "realcli_offline_gave_up_exit0.log", finished_at=1e9)
    )
    assert failure is not None and failure.cls == "crash"
    assert failure.detail.startswith("aider: litellm.InternalServerError: InternalServerError: OpenAIException")


def test_an_error_followed_by_a_successful_message_is_not_a_failure(tmp_path: Path) -> None:
    text = (FIXTURES / "real_429_rate_limit_20s.log").read_text() + "Tokens: 734 sent, 56 received.\n"
    assert classify(Outcome(exit_code=0, timed_out=False, log_path=log(tmp_path, text), finished_at=1e9)) is None


def test_rate_limit_message_wrapped_over_lines_is_read_whole() -> None:
    failure = classify(
        Outcome(exit_code=0, timed_out=False, log_path=FIXTURES / "real_429_rate_limit_20s.log", finished_at=100.0)
    )
    assert failure.cls == "rate_limited" and failure.reset_at == 120.0
    assert "Rate limit reached for requests. Please try again in 20s." in failure.detail

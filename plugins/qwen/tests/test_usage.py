"""Qwen Code's usage: the main agent's calls, not the result's total that the memory extractor doubles."""

from __future__ import annotations

from pathlib import Path

from aq_qwen.usage import parse

FIXTURES = Path(__file__).parent / "fixtures"


def test_a_resumed_session_counts_only_this_process_main_calls() -> None:
    usage = parse(FIXTURES / "mock-resumed-session-memory-extractor.log")
    # The real CLI's result: the earlier process's totals (3150) plus this call (1500) plus the background
    # memory extractor's call (1650), which the assistant records do not show.
    assert usage.extra["reported_input_tokens"] == 6300
    assert (usage.tokens_in, usage.tokens_cached, usage.tokens_out) == (1500, 300, 65)


def test_a_repeated_message_counts_once_and_error_notices_spend_nothing(tmp_path: Path) -> None:
    frame = '{"type":"assistant","message":{"id":"m1","model":"qwen3-coder-plus","content":[{"type":"tool_use","id":"t1"}],"usage":{"input_tokens":100,"output_tokens":7,"cache_read_input_tokens":40}}}'
    notice = '{"type":"assistant","message":{"id":"m2","content":[{"type":"text","text":"[API Error: 429 ...]"}],"usage":{"input_tokens":0,"output_tokens":0}}}'
    log = tmp_path / "a.log"
    log.write_text("\n".join([frame, frame, notice, ""]))
    usage = parse(log)
    assert usage.figures() == {
        "model": "qwen3-coder-plus",
        "tokens_in": 100,
        "tokens_cached": 40,
        "tokens_out": 7,
        "tool_calls": 1,
    }
    assert usage.extra["complete"] is False

"""Parser details the golden fixtures do not pin down: number formats, key orders, old names, sources."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aq_copilot.usage import _num, parse

FIXTURES = Path(__file__).parent / "fixtures"


def write(tmp_path: Path, *lines: str | dict) -> Path:
    log = tmp_path / "attempt.log"
    text = "".join((json.dumps(x, separators=(",", ":")) if isinstance(x, dict) else x) + "\n" for x in lines)
    log.write_text(text)
    return log


def span(span_id: str, **attrs: object) -> dict:
    base = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m1", "gen_ai.response.model": "m1"}
    return {"type": "span", "spanId": span_id, "name": "chat m1", "attributes": {**base, **attrs}}


@pytest.mark.parametrize(
    ("text", "value"),
    [("512", 512), ("1.2k", 1200), ("81.9k", 81900), ("6.5m", 6_500_000), ("6.5M", 6_500_000), ("1,234", 1234)],
)
def test_display_numbers(text: str, value: int) -> None:
    assert _num(text) == value


def test_otel_spans_are_summed_once_each_and_subagents_count(tmp_path: Path) -> None:
    log = write(
        tmp_path,
        span("a", **{"gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 10}),
        span("a", **{"gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 10}),  # re-exported
        span("b", **{"gen_ai.usage.input_tokens": 50, "gen_ai.usage.output_tokens": 5}),
        span("c"),  # a failed call: no usage
    )
    usage = parse(log)
    assert (usage.tokens_in, usage.tokens_out, usage.tokens_cached) == (150, 15, 0)
    assert usage.model == "m1"
    assert usage.extra["model_calls"] == 2
    assert usage.extra["session_cumulative"] is False


def test_otel_names_before_1_0_64(tmp_path: Path) -> None:
    old = {
        "gen_ai.usage.input_tokens": 900,
        "gen_ai.usage.output_tokens": 90,
        "gen_ai.usage.cache_read_input_tokens": 800,
        "gen_ai.usage.cache_creation_input_tokens": 40,
        "gen_ai.usage.reasoning_output_tokens": 9,
    }
    usage = parse(write(tmp_path, span("x", **old)))
    assert (usage.tokens_in, usage.tokens_out, usage.tokens_cached) == (900, 90, 800)
    assert usage.extra["tokens_cache_write"] == 40 and usage.extra["tokens_reasoning"] == 9


def test_key_order_inside_data_does_not_matter(tmp_path: Path) -> None:
    log = write(
        tmp_path,
        '{"type":"tool.execution_start","data":{"toolCallId":"t1","toolName":"bash"}}',
        '{"type":"tool.execution_start","data":{"toolName":"view","toolCallId":"t2"}}',
        '{"type":"assistant.message","data":{"content":"x","toolRequests":[],"model":"gpt-5.4"}}',
        '{"type":"assistant.turn_end","data":{"turnId":"0"}}',
    )
    usage = parse(log)
    assert (usage.tool_calls, usage.turns, usage.model) == (2, 1, "gpt-5.4")


def test_a_model_inside_tool_arguments_is_not_the_agents(tmp_path: Path) -> None:
    log = write(
        tmp_path,
        '{"type":"session.tools_updated","data":{"model":"claude-sonnet-4.6"}}',
        '{"type":"assistant.message","data":{"content":"","toolRequests":[{"toolCallId":"t","name":"task",'
        '"arguments":{"model":"gpt-5-mini","prompt":"go"}}]}}',
    )
    assert parse(log).model == "claude-sonnet-4.6"


def test_subagent_turns_and_messages_are_not_the_main_agents(tmp_path: Path) -> None:
    log = write(
        tmp_path,
        '{"type":"assistant.message","data":{"model":"main-model","content":"a"}}',
        '{"type":"assistant.turn_end","data":{"turnId":"0"}}',
        '{"type":"assistant.message","data":{"model":"sub-model","content":"b","parentToolCallId":"t"},"agentId":"s"}',
        '{"type":"assistant.turn_end","data":{"turnId":"0","parentToolCallId":"t"},"agentId":"s"}',
        '{"type":"assistant.turn_end","data":{"turnId":"1","parentToolCallId":"t"},"agentId":"s"}',
    )
    usage = parse(log)
    assert (usage.model, usage.turns) == ("main-model", 1)


def test_turn_ids_restart_with_each_process(tmp_path: Path) -> None:
    log = write(
        tmp_path,
        '{"type":"assistant.turn_end","data":{"turnId":"0"}}',
        '{"type":"result","sessionId":"s1","exitCode":0}',
        '{"type":"assistant.turn_end","data":{"turnId":"0"}}',
        '{"type":"assistant.turn_end","data":{"turnId":"1"}}',
        '{"type":"result","sessionId":"s1","exitCode":0}',
    )
    assert parse(log).turns == 3


def test_a_finished_event_stream_with_no_turns_says_zero(tmp_path: Path) -> None:
    usage = parse(write(tmp_path, '{"type":"result","sessionId":"s","exitCode":1}'))
    assert (usage.turns, usage.tool_calls, usage.session_id) == (0, 0, "s")
    assert usage.tokens_in is None and usage.model is None


def test_sources_in_order_of_trust(tmp_path: Path) -> None:
    checkpoint = {
        "type": "session.usage_checkpoint",
        "data": {
            "providerModelMetrics": [{"modelId": "m", "metrics": {"usage": {"inputTokens": 9, "outputTokens": 9}}}]
        },
    }
    usage_event = {"type": "assistant.usage", "id": "u1", "data": {"model": "m", "inputTokens": 5, "outputTokens": 2}}
    otel = span("s", **{"gen_ai.usage.input_tokens": 3, "gen_ai.usage.output_tokens": 1})
    assert parse(write(tmp_path, checkpoint, usage_event, otel)).extra["tokens_source"] == "otel"
    assert parse(write(tmp_path, checkpoint, usage_event)).extra["tokens_source"] == "assistant.usage"
    only_checkpoint = parse(write(tmp_path, checkpoint))
    assert only_checkpoint.extra["tokens_source"] == "session.usage_checkpoint"
    assert only_checkpoint.extra["session_cumulative"] is True
    assert (only_checkpoint.tokens_in, only_checkpoint.tokens_out) == (9, 9)


def test_the_summary_may_be_followed_by_aq_notes_and_crlf(tmp_path: Path) -> None:
    text = (FIXTURES / "real-text-1.0.102.log").read_text().replace("\n", "\r\n")
    log = tmp_path / "a.log"
    log.write_text(text + "aq: attempt 1 ended (exit 0)\n")
    usage = parse(log)
    assert (usage.tokens_in, usage.tokens_out, usage.tokens_cached) == (3200, 86, 2000)
    # 1.0.102 counts the whole session in its exit summary (checked offline: a third run printed 3x the tokens).
    assert usage.extra["session_cumulative"] is True


def test_rounded_cached_never_exceeds_input(tmp_path: Path) -> None:
    log = write(tmp_path, "Tokens     \u2191 999 (1.0k cached) \u2022 \u2193 5")
    usage = parse(log)
    assert (usage.tokens_in, usage.tokens_cached) == (999, 999)
    assert usage.extra["tokens_cached_printed"] == 1000


def test_missing_file_gives_empty_usage(tmp_path: Path) -> None:
    usage = parse(tmp_path / "nope.log")
    assert usage.figures() == {}

"""parse_usage beyond the golden files: traps, conventions, extras and the decode shortcut."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aq_claude.usage import parse_log, result_figures, version_tuple

from aq_core import plugins
from aq_core.testing import fixture_cases

FIXTURES = Path(__file__).parent / "fixtures"
SID = "3f6c0000-1111-4222-8333-444455556666"


def dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def write(tmp_path: Path, *lines, name: str = "run.log") -> Path:
    path = tmp_path / name
    path.write_text("".join((line if isinstance(line, str) else dumps(line)) + "\n" for line in lines))
    return path


def init(session=SID, model="claude-sonnet-4-5-20250929", version="2.1.197"):
    return {"type": "system", "subtype": "init", "session_id": session, "model": model, "claude_code_version": version}


def frame(msg_id, blocks, usage=None, parent=None, model="claude-sonnet-4-5-20250929"):
    message = {"id": msg_id, "model": model, "role": "assistant", "content": blocks}
    if usage is not None:
        message["usage"] = usage
    return {"type": "assistant", "message": message, "parent_tool_use_id": parent, "session_id": SID}


def use(inp=1, cw=0, cr=0, out=1, **more):
    return {
        "input_tokens": inp,
        "cache_creation_input_tokens": cw,
        "cache_read_input_tokens": cr,
        "output_tokens": out,
        **more,
    }


def result(cost=0.01, turns=1, session=SID, **model_usage):
    mu = {
        name: dict(
            zip(
                ("inputTokens", "outputTokens", "cacheReadInputTokens", "cacheCreationInputTokens", "costUSD"),
                v,
                strict=True,
            )
        )
        for name, v in model_usage.items()
    }
    return {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "num_turns": turns,
        "session_id": session,
        "total_cost_usd": cost,
        "modelUsage": mu,
    }


def tool(tool_id, name="Bash", inp=None):
    return {"type": "tool_use", "id": tool_id, "name": name, "input": inp or {"command": "ls"}}


@pytest.mark.parametrize("case", fixture_cases(FIXTURES), ids=lambda p: p.stem)
def test_the_decode_shortcut_never_changes_a_figure(case: Path) -> None:
    fast, slow = parse_log(case), parse_log(case, fast=False)
    assert fast.figures() == slow.figures()
    assert fast.extra == slow.extra


def test_extras_name_the_session_version_and_regime() -> None:
    usage = plugins.parse_usage("claude", FIXTURES / "stream-success.log")
    assert usage.session_id == "9b0d7c1e-5b9a-4c55-8f0e-3a1d2c4b5e6f"
    assert usage.extra["engine_version"] == "2.1.197"
    assert usage.extra["session_cumulative"] is False
    assert usage.extra["tokens_cache_write"] == 9840 + 1200
    assert usage.extra["output_mode"] == "stream-json"
    assert usage.extra["complete"] is True
    # Subagent messages are not turns of the main loop, but their tool calls are tool calls.
    assert usage.extra["assistant_messages"] == 4
    assert usage.tool_calls == 5 and usage.extra["tool_calls_main"] == 4
    cumulative = plugins.parse_usage("claude", FIXTURES / "stream-resumed-cumulative.log")
    assert cumulative.extra["session_cumulative"] is True
    assert cumulative.extra["engine_version"] == "2.1.280"
    # What the core needs to subtract on the next resume: the last cumulative totals of each session.
    assert cumulative.extra["session_totals"]["6b7c8d9e-4444-4555-8666-c77788899900"]["cost_usd"] == 0.08


def test_the_not_logged_in_run_reports_zeros_not_the_synthetic_model() -> None:
    usage = plugins.parse_usage("claude", FIXTURES / "realcli-notloggedin-stream.log")
    assert usage.model == "claude-opus-4-8[1m]"  # the session's model, from system/init
    assert (usage.tokens_in, usage.tokens_out, usage.cost_usd) == (0, 0, 0.0)


def test_synthetic_model_is_never_reported(tmp_path: Path) -> None:
    log = write(
        tmp_path, frame("a1", [{"type": "text", "text": "Not logged in"}], use(0, 0, 0, 0), model="<synthetic>")
    )
    assert parse_log(log).model is None
    figures = result_figures({"modelUsage": {"<synthetic>": {"outputTokens": 0, "costUSD": 0}}})
    assert "model" not in figures


def test_killed_run_reports_reliable_input_only(tmp_path: Path) -> None:
    log = write(
        tmp_path,
        init(),
        frame("m1", [{"type": "text", "text": "a"}], use(3, 100, 1000, 2)),
        frame("m1", [tool("t1")], use(3, 100, 1000, 2)),
        frame(
            "m2",
            [tool("t2")],
            use(4, 0, 1100, 1, cache_creation={"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 50}),
        ),
    )
    usage = parse_log(log)
    assert usage.tokens_in == (3 + 100 + 1000) + (4 + 50 + 1100)
    assert usage.tokens_cached == 2100
    assert usage.tokens_out is None and usage.cost_usd is None
    assert usage.extra["tokens_out_lower_bound"] == 3
    assert usage.extra["complete"] is False
    assert (usage.turns, usage.tool_calls) == (2, 2)


def test_last_result_of_a_process_wins(tmp_path: Path) -> None:
    # One process serving several user turns prints a cumulative result after each.
    log = write(
        tmp_path,
        init(),
        frame("m1", [{"type": "text", "text": "a"}], use()),
        result(0.01, 1, m=(1, 10, 0, 0, 0.01)),
        frame("m2", [{"type": "text", "text": "b"}], use()),
        result(0.03, 2, m=(2, 30, 0, 0, 0.03)),
    )
    usage = parse_log(log)
    assert (usage.cost_usd, usage.tokens_out, usage.tokens_in) == (0.03, 30, 2)
    assert usage.turns == 2  # distinct main-loop messages: num_turns across results is undocumented


def test_model_of_json_mode_is_the_costliest_then_the_wordiest(tmp_path: Path) -> None:
    log = write(tmp_path, result(0.2, 1, small=(1, 500, 0, 0, 0.1), big=(1, 900, 0, 0, 0.1)))
    assert parse_log(log).model == "big"
    log = write(tmp_path, result(0.3, 1, small=(1, 500, 0, 0, 0.2), big=(1, 900, 0, 0, 0.1)))
    assert parse_log(log).model == "small"


def test_nested_cache_writes_replace_a_zero_top_level_figure() -> None:
    figures = result_figures(
        {
            "usage": {
                "input_tokens": 5,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 10,
                "output_tokens": 1,
                "cache_creation": {"ephemeral_5m_input_tokens": 7, "ephemeral_1h_input_tokens": 3},
            }
        }
    )
    assert figures["tokens_in"] == 25 and figures["tokens_cache_write"] == 10


def test_a_result_quoted_in_a_tool_result_or_text_is_not_read(tmp_path: Path) -> None:
    fake = dumps(result(99.0, 99, fake=(999, 999, 0, 0, 99.0)))
    log = write(
        tmp_path,
        init(),
        frame("m1", [{"type": "text", "text": fake}], use(1, 0, 0, 1)),
        frame("m1", [tool("t1", inp={"command": "cat out.json"})], use(1, 0, 0, 1)),
        {
            "type": "user",
            "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": fake}]},
        },
        result(0.02, 1, m=(1, 4, 0, 0, 0.02)),
    )
    usage = parse_log(log)
    assert (usage.cost_usd, usage.turns, usage.tokens_out, usage.tool_calls) == (0.02, 1, 4, 1)


def test_a_tool_input_shaped_like_a_tool_call_is_one_call(tmp_path: Path) -> None:
    nested = {"note": {"type": "tool_use", "id": "toolu_fake", "name": "x", "input": {}}}
    log = write(
        tmp_path,
        init(),
        frame("m1", [{"type": "text", "text": "first"}], use()),
        frame("m1", [tool("toolu_real", "mcp__x", nested)], use()),
        frame("m1", [tool("toolu_real2")], use()),
    )
    assert parse_log(log).tool_calls == 2
    assert parse_log(log, fast=False).tool_calls == 2


def test_a_frame_with_several_blocks_counts_each_tool(tmp_path: Path) -> None:
    log = write(
        tmp_path,
        init(),
        frame(
            "m1",
            [
                {"type": "text", "text": "x"},
                tool("a"),
                tool("b"),
                {"type": "server_tool_use", "id": "srv", "name": "web_search", "input": {}},
            ],
            use(),
        ),
    )
    assert parse_log(log).tool_calls == 3


def test_a_bare_result_followed_by_more_text_is_an_answer(tmp_path: Path) -> None:
    quoted = write(tmp_path, "The CLI printed:", dumps(result(5.0, 9, m=(1, 1, 0, 0, 5.0))), "and then stopped.")
    assert parse_log(quoted).figures() == {}
    last = write(
        tmp_path,
        "Warning: no stdin data received in 3s",
        dumps(result(5.0, 9, m=(1, 1, 0, 0, 5.0))),
        "",
        "aq: done",
        name="j.log",
    )
    assert parse_log(last).cost_usd == 5.0


def test_stream_lines_with_other_spacing_are_still_read(tmp_path: Path) -> None:
    log = write(
        tmp_path,
        json.dumps(init()),
        json.dumps(frame("m1", [tool("t1")], use(1, 2, 3, 4))),
        json.dumps(result(0.5, 1, m=(1, 4, 3, 2, 0.5))),
    )
    usage = parse_log(log)
    assert (usage.tokens_in, usage.cost_usd, usage.tool_calls, usage.model) == (6, 0.5, 1, "claude-sonnet-4-5-20250929")


def test_wrong_types_are_ignored(tmp_path: Path) -> None:
    log = write(
        tmp_path,
        {"type": "system", "subtype": "init", "model": 5, "session_id": ["x"], "claude_code_version": None},
        {"type": "assistant", "message": {"id": 7, "content": "text", "usage": "lots"}},
        {
            "type": "assistant",
            "message": {
                "id": "m",
                "content": [None, 3, {"type": "tool_use", "id": None}],
                "usage": {"input_tokens": -5, "output_tokens": True},
            },
        },
        {"type": "result", "modelUsage": {"m": "x", "": {}}, "usage": [], "total_cost_usd": "1", "num_turns": 1.5},
        [1, "two", None],
    )
    usage = parse_log(log)
    assert usage.cost_usd is None and usage.model is None
    assert usage.tool_calls == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2.1.197", (2, 1, 197)),
        ("2.1.277 (Claude Code)", (2, 1, 277)),
        ("2.1.300-beta.1", (2, 1, 300)),
        ("x", None),
        (None, None),
    ],
)
def test_version_tuple(text, expected) -> None:
    assert version_tuple(text) == expected

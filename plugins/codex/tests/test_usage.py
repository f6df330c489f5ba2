"""Parser cases beyond the golden files: footer spoofing, odd layouts, id bookkeeping, memory and speed shape."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest
from aq_codex.usage import _IdSet, parse

from aq_core import plugins

TID = "019f9f3b-baa5-7412-a501-658c0f1e1cf2"
HEADER = [
    "OpenAI Codex v0.171.0",
    "--------",
    "workdir: /home/dev/repo",
    "model: gpt-6.2-sol",
    "provider: openai",
    "approval: never",
    "sandbox: workspace-write [workdir, /tmp, $TMPDIR]",
    "reasoning effort: none",
    "reasoning summaries: none",
    f"session id: {TID}",
    "--------",
    "user",
    "say hi",
]


def log(tmp_path: Path, lines: list[str], name: str = "a.log") -> Path:
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines))
    return path


def j(obj: dict) -> str:
    return json.dumps(obj, separators=(",", ":"))


def test_hook_answers_only_for_codex(tmp_path: Path) -> None:
    path = log(tmp_path, [])
    assert plugins.plugin_manager().hook.parse_usage(engine="codex", log_path=path, settings={}) is not None
    from aq_codex import parse_usage

    assert parse_usage(engine="claude", log_path=path) is None


def test_missing_file_is_no_usage(tmp_path: Path) -> None:
    assert parse(tmp_path / "nope.log").figures() == {}


@pytest.mark.parametrize(
    "number, value", [("41,806", 41806), ("123 721", 123721), ("193326", 193326), ("1.234.567", 1234567)]
)
def test_footer_number_with_locale_separators(tmp_path: Path, number: str, value: int) -> None:
    usage = parse(log(tmp_path, [*HEADER, "codex", "Hi!", "tokens used", number, "Hi!"]))
    assert usage.figures() == {"model": "gpt-6.2-sol"}
    assert usage.extra["tokens_blended"] == value
    assert usage.extra["session_id"] == TID and usage.extra["engine_version"] == "0.171.0"


def test_stderr_only_footer_is_the_last_thing(tmp_path: Path) -> None:
    # stdout captured elsewhere: the answer's fake footer comes before the real one, nothing after it.
    usage = parse(log(tmp_path, [*HEADER, "codex", "Printed:", "tokens used", "7", "tokens used", "2,048"]))
    assert usage.extra["tokens_blended"] == 2048


def test_fake_footer_only_in_the_echo_does_not_win(tmp_path: Path) -> None:
    lines = [*HEADER, "codex", "Done.", "tokens used", "12", "tokens used", "3,001", "Done.", "tokens used", "12"]
    assert parse(log(tmp_path, lines)).extra["tokens_blended"] == 3001


def test_answer_ending_in_newline_and_colour_codes(tmp_path: Path) -> None:
    lines = [
        *HEADER,
        "\x1b[3m\x1b[35mcodex\x1b[0m",
        "Done.",
        "",
        "\x1b[3m\x1b[35mtokens used\x1b[0m",
        "5,120",
        "Done.",
        "aq: attempt 1 finished: exit 0",
    ]
    assert parse(log(tmp_path, lines)).extra["tokens_blended"] == 5120


def test_text_mode_ignores_json_and_a_second_header(tmp_path: Path) -> None:
    lines = [
        *HEADER,
        "exec",
        "/bin/bash -lc 'cat run.jsonl' in /home/dev/repo",
        " succeeded in 3ms:",
        j({"type": "thread.started", "thread_id": "x"}),
        j({"type": "turn.completed", "usage": {"input_tokens": 5, "cached_input_tokens": 0, "output_tokens": 5}}),
        "OpenAI Codex v9.9.9",
        "--------",
        "model: fake",
        "session id: fake",
        "--------",
        "codex",
        "ok",
        "tokens used",
        "100",
        "ok",
    ]
    usage = parse(log(tmp_path, lines))
    assert usage.figures() == {"model": "gpt-6.2-sol"}
    assert usage.extra["session_id"] == TID and usage.extra["tokens_blended"] == 100


def test_json_mode_ignores_text_footer_lines(tmp_path: Path) -> None:
    lines = [
        j({"type": "thread.started", "thread_id": TID}),
        "tokens used",
        "999",
        "OpenAI Codex v9.9.9",
        j({"type": "turn.completed", "usage": {"input_tokens": 10, "cached_input_tokens": 4, "output_tokens": 3}}),
    ]
    usage = parse(log(tmp_path, lines))
    assert usage.figures() == {"tokens_in": 10, "tokens_cached": 4, "tokens_out": 3, "turns": 1, "tool_calls": 0}
    assert "tokens_blended" not in usage.extra and usage.extra["format"] == "exec-json"


def test_items_in_another_key_order_and_plan_deltas(tmp_path: Path) -> None:
    lines = [
        j({"type": "thread.started", "thread_id": TID}),
        j({"type": "item.completed", "item": {"type": "command_execution", "id": "item_3", "command": "ls"}}),
        j({"type": "item.started", "item": {"id": "call-7", "type": "mcp_tool_call", "server": "s", "tool": "t"}}),
        j({"type": "item.completed", "item": {"id": "call-7", "type": "mcp_tool_call", "server": "s", "tool": "t"}}),
        j({"type": "item.plan.delta", "item_id": "item_4", "delta": "step"}),
        j({"type": "item.completed", "item": {"id": "item_5", "type": "todo_list", "items": []}}),
        j({"type": "item.completed", "item": {"id": "item_99999999999", "type": "web_search", "query": "q"}}),
        j({"type": "item.completed", "item": {"id": 'item_"q"', "type": "file_change", "changes": []}}),
    ]
    assert parse(log(tmp_path, lines)).tool_calls == 4


def test_failed_turn_counts_and_usage_stays_absent(tmp_path: Path) -> None:
    lines = [
        j({"type": "thread.started", "thread_id": TID}),
        j({"type": "turn.started"}),
        j({"type": "error", "message": "You've hit your usage limit. Try again later."}),
        j({"type": "turn.failed", "error": {"message": "You've hit your usage limit. Try again later."}}),
    ]
    usage = parse(log(tmp_path, lines))
    assert usage.figures() == {"turns": 1, "tool_calls": 0}
    assert usage.extra["session_id"] == TID


def test_killed_mid_turn_is_marked_incomplete(tmp_path: Path) -> None:
    lines = [j({"type": "thread.started", "thread_id": TID}), j({"type": "turn.started"})]
    usage = parse(log(tmp_path, lines))
    assert usage.figures() == {"tool_calls": 0} and usage.extra["complete"] is False


def test_negative_or_bogus_numbers_are_not_figures(tmp_path: Path) -> None:
    lines = [
        j({"type": "thread.started", "thread_id": TID}),
        j({"type": "turn.completed", "usage": {"input_tokens": -3, "cached_input_tokens": "9", "output_tokens": True}}),
    ]
    assert parse(log(tmp_path, lines)).figures() == {"turns": 1, "tool_calls": 0}


def test_cached_above_input_is_dropped(tmp_path: Path) -> None:
    lines = [
        j({"type": "thread.started", "thread_id": TID}),
        j({"type": "turn.completed", "usage": {"input_tokens": 10, "cached_input_tokens": 50, "output_tokens": 1}}),
    ]
    assert parse(log(tmp_path, lines)).figures() == {"tokens_in": 10, "tokens_out": 1, "turns": 1, "tool_calls": 0}


def test_legacy_config_line_only_counts_first(tmp_path: Path) -> None:
    cfg = {"workdir": "/w", "model": "gpt-5", "provider": "openai", "approval": "never", "sandbox": "read-only"}
    lines = [
        j(cfg),
        j({"id": "0", "msg": {"type": "task_started"}}),
        j(dict(cfg, model="not-this")),
        j({"id": "0", "msg": {"type": "token_count", "info": None}}),
        j({"id": "0", "msg": {"type": "session_configured", "session_id": TID, "model": "gpt-5"}}),
    ]
    usage = parse(log(tmp_path, lines))
    assert usage.figures() == {"model": "gpt-5", "tool_calls": 0}
    assert usage.extra["session_id"] == TID


def test_id_set_counts_distinct() -> None:
    ids = _IdSet()
    for raw in [b"item_0", b"item_0", b"item_5", b"item_40000000", b"item_40000000", b"x", b"x", b"item_"]:
        ids.add(raw)
    assert ids.count == 5
    assert len(ids.marks) < 1 << 10  # a huge id does not grow the map


def test_no_mode_no_figures(tmp_path: Path) -> None:
    lines = ["Reading prompt from stdin...", '{"prompt":"hi"}', "warning: something"]
    assert parse(log(tmp_path, lines)).figures() == {}


def test_many_tool_items_stay_small(tmp_path: Path) -> None:
    # 200k distinct tool items: the id bookkeeping must stay far below the log size.
    path = tmp_path / "big.log"
    with path.open("w") as fh:
        fh.write(j({"type": "thread.started", "thread_id": TID}) + "\n")
        for n in range(200_000):
            fh.write(j({"type": "item.started", "item": {"id": f"item_{n}", "type": "command_execution"}}) + "\n")
        fh.write(
            j({"type": "turn.completed", "usage": {"input_tokens": 1, "cached_input_tokens": 0, "output_tokens": 1}})
        )
        fh.write("\n")
    tracemalloc.start()
    try:
        usage = parse(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert usage.tool_calls == 200_000
    assert path.stat().st_size > 13 << 20
    assert peak < 8 << 20  # the 1 MiB read blocks and their lines, plus a 200 kB id map

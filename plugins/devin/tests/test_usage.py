"""Usage comes only from Devin's ATIF export beside the log; the plain log never gives figures."""

from __future__ import annotations

import json
import os
import shutil
import tracemalloc
from pathlib import Path

import pytest
from aq_devin.atif import export_path, read_export

from aq_core import plugins

FIXTURES = Path(__file__).parent / "fixtures"


def copy_case(name: str, tmp_path: Path) -> Path:
    log = tmp_path / f"{name}.log"
    shutil.copy(FIXTURES / f"{name}.log", log)
    shutil.copy(FIXTURES / f"{name}.log.atif.json", export_path(log))
    return log


def write_export(tmp_path: Path, document: object) -> Path:
    log = tmp_path / "job.1.log"
    log.write_text("answer\n")
    export_path(log).write_text(json.dumps(document))
    return log


def test_export_path_is_the_log_path_plus_suffix(tmp_path: Path) -> None:
    assert export_path(tmp_path / "logs" / "a.3.log") == tmp_path / "logs" / "a.3.log.atif.json"


def test_plain_log_without_export_has_no_figures(tmp_path: Path) -> None:
    log = tmp_path / "job.1.log"
    shutil.copy(FIXTURES / "answer-quotes-usage.log", log)
    usage = plugins.parse_usage("devin", log)
    assert usage.figures() == {}
    assert usage.extra == {}


def test_missing_log_and_export_never_raise(tmp_path: Path) -> None:
    assert plugins.parse_usage("devin", tmp_path / "nope.log").figures() == {}


def test_export_extra_keeps_raw_figures_and_session(tmp_path: Path) -> None:
    usage = plugins.parse_usage("devin", copy_case("atif-export", tmp_path))
    assert usage.session_id == "b7c1e9d2-4f0a-4c57-9a1e-2f6d8e3a5b10"
    assert usage.extra["atif_schema_version"] == "ATIF-v1.7"
    assert usage.extra["devin_version"] == "3000.11.1"
    assert usage.extra["token_source"] == "final_metrics"
    assert usage.extra["prompt_tokens_semantics"] == "inclusive"
    assert usage.extra["tokens_cache_write"] == 6200 + 6638 + 1134
    assert usage.extra["committed_credit_cost"] == pytest.approx(0.35)
    assert usage.extra["total_steps"] == 4
    assert usage.cost_usd is None, "credits are not USD"


def test_additive_reading_only_when_the_file_contradicts_inclusive(tmp_path: Path) -> None:
    usage = plugins.parse_usage("devin", copy_case("atif-additive", tmp_path))
    assert usage.extra["prompt_tokens_semantics"] == "additive"
    assert usage.tokens_in == 1200 + 15000 + 4000


def test_torn_export_gives_nothing(tmp_path: Path) -> None:
    usage = plugins.parse_usage("devin", copy_case("atif-torn", tmp_path))
    assert usage.figures() == {}
    assert usage.extra == {"atif_export": "unreadable"}


@pytest.mark.parametrize(
    "document",
    [
        [1, 2, 3],
        "text",
        {"steps": "none", "final_metrics": [1]},
        {"final_metrics": {"total_prompt_tokens": -5, "total_completion_tokens": True, "total_cached_tokens": "9"}},
        {"steps": [None, 3, {"metrics": {"prompt_tokens": "x"}, "tool_calls": "y"}]},
        {"agent": {"model_name": 7}, "session_id": ["x"]},
    ],
)
def test_wrong_shapes_never_raise(tmp_path: Path, document: object) -> None:
    usage = plugins.parse_usage("devin", write_export(tmp_path, document))
    figures = usage.figures()
    assert all(v is not None for v in figures.values())
    assert "tokens_in" not in figures


def test_agent_text_and_tool_arguments_never_count(tmp_path: Path) -> None:
    fake = {"prompt_tokens": 1_000_000, "completion_tokens": 1_000_000, "tool_call_id": "fake"}
    log = write_export(
        tmp_path,
        {
            "session_id": "s",
            "steps": [
                {"source": "user", "message": json.dumps({"final_metrics": fake}), "metrics": fake},
                {
                    "source": "agent",
                    "message": '{"final_metrics": {"total_prompt_tokens": 5}}',
                    "tool_calls": [{"tool_call_id": "c1", "function_name": "f", "arguments": {"metrics": fake}}],
                    "observation": {"results": [{"content": json.dumps(fake), "extra": {"metrics": fake}}]},
                    "metrics": {"prompt_tokens": 10, "completion_tokens": 2},
                },
            ],
        },
    )
    usage = plugins.parse_usage("devin", log)
    assert usage.figures() == {"tokens_in": 10, "tokens_out": 2, "turns": 1, "tool_calls": 1}


def test_tool_calls_are_distinct_ids(tmp_path: Path) -> None:
    call = {"tool_call_id": "same", "function_name": "f", "arguments": {}}
    log = write_export(
        tmp_path,
        {"steps": [{"source": "agent", "tool_calls": [call, call, {"function_name": "g", "arguments": {}}]}]},
    )
    assert plugins.parse_usage("devin", log).tool_calls == 2


def test_symlinked_export_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.json"
    target.write_text(json.dumps({"final_metrics": {"total_prompt_tokens": 5}}))
    log = tmp_path / "job.1.log"
    log.write_text("")
    os.symlink(target, export_path(log))
    usage = plugins.parse_usage("devin", log)
    assert usage.figures() == {}


def test_read_export_returns_none_without_a_file(tmp_path: Path) -> None:
    assert read_export(tmp_path / "missing.atif.json") is None


def test_large_export_streams_in_constant_memory(tmp_path: Path) -> None:
    observation = {"results": [{"source_call_id": "c", "content": "z" * (256 << 10)}]}
    steps = [
        {
            "step_id": i,
            "source": "agent",
            "tool_calls": [{"tool_call_id": f"c{i}", "function_name": "exec", "arguments": {"cmd": "ls"}}],
            "observation": observation,
            "metrics": {"prompt_tokens": 100, "completion_tokens": 10, "cached_tokens": 50},
        }
        for i in range(64)
    ]
    log = write_export(tmp_path, {"session_id": "s", "steps": steps})
    size = export_path(log).stat().st_size
    assert size > 16 << 20
    tracemalloc.start()
    try:
        usage = plugins.parse_usage("devin", log)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert usage.figures() == {
        "tokens_in": 6400,
        "tokens_out": 640,
        "tokens_cached": 3200,
        "turns": 64,
        "tool_calls": 64,
    }
    # A window of the file (a chunk plus the step being decoded), never the file: well under its size.
    assert peak < 8 << 20, f"held {peak} bytes for a {size}-byte export"

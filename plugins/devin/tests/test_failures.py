"""classify_failure: Devin's own error lines, anchored, only on a non-zero exit."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from aq_core import plugins
from aq_core.engine import Outcome


def classify(tmp_path: Path, text: str, exit_code: int | None = 1, timed_out: bool = False):
    log = tmp_path / "job.1.log"
    log.write_text(text)
    return plugins.classify_failure(
        "devin", Outcome(exit_code=exit_code, timed_out=timed_out, log_path=log, finished_at=1_764_000_000.0)
    )


@pytest.mark.parametrize(
    ("line", "cls"),
    [
        ("Error: Not logged in. Run `devin auth login` to authenticate.", "auth_error"),
        ("\x1b[31mError:\x1b[0m Not logged in. Run `devin auth login` to authenticate.", "auth_error"),
        ("Error: Authentication required", "auth_error"),
        ("Error: Quota exhausted", "usage_limit"),
        ("error: Usage limit reached", "usage_limit"),
        ("Error: Usage paused", "usage_limit"),
        ("Purchase on-demand usage or turn on auto-reload, or wait for your quota to reset.", "usage_limit"),
    ],
)
def test_devin_error_lines(tmp_path: Path, line: str, cls: str) -> None:
    failure = classify(tmp_path, f"some output\n{line}\n")
    assert failure.cls == cls
    assert failure.detail and "\n" not in failure.detail


def test_last_error_line_wins(tmp_path: Path) -> None:
    text = "Error: Not logged in. Run `devin auth login` to authenticate.\nError: Quota exhausted\n"
    assert classify(tmp_path, text).cls == "usage_limit"


def test_quoted_messages_with_exit_0_are_ok(tmp_path: Path) -> None:
    assert classify(tmp_path, "Error: Quota exhausted\n", exit_code=0).cls == "ok"


def test_timeout_is_left_to_the_core(tmp_path: Path) -> None:
    assert classify(tmp_path, "Error: Quota exhausted\n", exit_code=-15, timed_out=True).cls == "timeout"


def test_unknown_exit_still_recognises_devin_lines(tmp_path: Path) -> None:
    assert classify(tmp_path, "Error: Devin needs authentication\n", exit_code=None).cls == "auth_error"


def test_mid_sentence_words_do_not_count(tmp_path: Path) -> None:
    failure = classify(tmp_path, "I think the quota exhausted error means you are not logged in.\n")
    assert failure.cls == "crash"
    assert failure.detail == "engine ended with exit 1"


def test_core_lines_are_ignored(tmp_path: Path) -> None:
    assert classify(tmp_path, "aq: Error: Quota exhausted\n").detail == "engine ended with exit 1"


def test_crash_details(tmp_path: Path) -> None:
    assert classify(tmp_path, "Error: Unknown model: 'nope-1'\n").detail == "devin: Error: Unknown model: 'nope-1'"
    unsupported = classify(tmp_path, "error: unexpected argument '--export' found\n", exit_code=2)
    assert unsupported.cls == "crash"
    assert unsupported.detail == "this devin version does not accept --export: update devin"


def test_long_lines_are_cut(tmp_path: Path) -> None:
    failure = classify(tmp_path, "Error: Quota exhausted " + "x" * 500 + "\n")
    assert failure.cls == "usage_limit" and len(failure.detail) <= 210


def test_refused_tool_calls_explain_an_ok_run(tmp_path: Path) -> None:
    text = "warning: rejected a tool call that requires confirmation\n" * 2 + "I could not write the file.\n"
    failure = classify(tmp_path, text, exit_code=0)
    assert failure.cls == "ok"
    assert "2 tool calls" in failure.detail and "yolo" in failure.detail


def test_reset_time_comes_from_the_core_parser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, float]] = []

    def parse_reset(text: str, now: float, local_tz=None) -> float | None:
        seen.append((text, now))
        return now + 3600.0

    module = types.ModuleType("aq_core.reset_time")
    module.parse_reset = parse_reset
    monkeypatch.setitem(sys.modules, "aq_core.reset_time", module)
    failure = classify(tmp_path, "Error: Quota exhausted\n")
    assert failure.cls == "usage_limit"
    assert failure.reset_at == 1_764_000_000.0 + 3600.0
    assert seen == [("Error: Quota exhausted", 1_764_000_000.0)]


def test_reset_parser_failure_keeps_the_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("aq_core.reset_time")

    def broken(text: str, now: float, local_tz=None) -> float | None:
        raise RuntimeError("bug")

    module.parse_reset = broken
    monkeypatch.setitem(sys.modules, "aq_core.reset_time", module)
    failure = classify(tmp_path, "Error: Usage limit reached\n")
    assert (failure.cls, failure.reset_at) == ("usage_limit", None)


def test_unreadable_log_is_left_to_the_core(tmp_path: Path) -> None:
    failure = plugins.classify_failure(
        "devin", Outcome(exit_code=1, timed_out=False, log_path=tmp_path / "missing.log", finished_at=1e9)
    )
    assert failure.cls == "crash"

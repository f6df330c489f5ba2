"""The opencode usage and failure readers' corners, on the real captures in fixtures/."""

from __future__ import annotations

from pathlib import Path

from aq_opencode.failure import classify
from aq_opencode.usage import parse

from aq_core.engine import Outcome

FIXTURES = Path(__file__).parent / "fixtures"


def test_session_id_cache_and_reasoning_are_kept() -> None:
    usage = parse(FIXTURES / "real_write_tool_priced.log")
    assert usage.session_id == "ses_dbad32e83ffeQtYvgiEIpcGf2t"
    assert usage.extra["tokens_reasoning"] == 14 and usage.extra["tokens_cache_write"] == 0


def test_a_zero_cost_for_an_unpriced_model_is_not_reported() -> None:
    usage = parse(FIXTURES / "realcli_mock_success_unpriced.log")
    assert usage.cost_usd is None and usage.extra["cost_unpriced"] is True


def test_a_repeated_tool_event_counts_once(tmp_path: Path) -> None:
    lines = (FIXTURES / "real_write_tool_priced.log").read_text().splitlines(keepends=True)
    tool = next(line for line in lines if line.startswith('{"type":"tool_use"'))
    log = tmp_path / "twice.log"
    log.write_text("".join(lines) + tool)
    assert parse(log).tool_calls == 1


def test_agent_text_that_looks_like_an_event_is_not_read(tmp_path: Path) -> None:
    log = tmp_path / "quoted.log"
    log.write_text(
        '{"type":"text","timestamp":1,"sessionID":"ses_aaaaaaaaaaaa","part":{"type":"text","text":'
        '"{\\"type\\":\\"step_finish\\",\\"part\\":{\\"tokens\\":{\\"input\\":999}}}"}}\n'
        '   {"type":"step_finish","part":{"tokens":{"input":5,"output":1}}}\n'
    )
    usage = parse(log)
    assert usage.tokens_in is None and usage.turns is None


def test_an_error_line_before_a_successful_run_is_not_a_failure(tmp_path: Path) -> None:
    log = tmp_path / "ok.log"
    log.write_text("Error: something transient\n" + (FIXTURES / "real_write_tool_priced.log").read_text())
    assert classify(Outcome(exit_code=0, timed_out=False, log_path=log, finished_at=1e9)) is None


def test_a_timeout_is_left_to_the_core() -> None:
    log = FIXTURES / "real_429_rate_limit_20s.log"
    assert classify(Outcome(exit_code=-15, timed_out=True, log_path=log, finished_at=1e9)) is None


def test_lost_session_starts_a_new_one() -> None:
    failure = classify(
        Outcome(exit_code=1, timed_out=False, log_path=FIXTURES / "real_session_not_found.log", finished_at=1e9)
    )
    assert failure is not None and failure.session_lost and failure.detail == "opencode: Session not found"

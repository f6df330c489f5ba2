"""The engine plugin toolkit: safe JSON, streamed logs, reset times and one-line details."""

from __future__ import annotations

import datetime as dt
import tracemalloc
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from aq_core import enginekit
from aq_core.enginekit import as_float, as_int, detail, iter_json, loads, reset_at

NY = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'{"a": 1}', {"a": 1}),
        ('{"a": "\u00e9"}', {"a": "\u00e9"}),
        (b"[1, 2]", None),
        (b"null", None),
        (b'{"a": ', None),
        (b"\xff\xfe{}", None),
        (b"", None),
        (b"[" * 100_000, None),
        (None, None),
        (42, None),
    ],
)
def test_loads_returns_one_object_or_none(line: object, expected: object) -> None:
    assert loads(line) == expected  # type: ignore[arg-type]


def test_iter_json_yields_top_level_objects_only(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(
        b'{"n": 1}\n'
        b"warning: not json\n"
        b'  {"n": 2}\n'
        b"[1, 2]\n"
        b'{"broken": \n'
        b"\xff\xfe\x00\n"
        b'{"n": 3}\n'
        b'{"n": 4, "torn": tr'  # the process was killed mid-line
    )
    assert [obj["n"] for obj in iter_json(log)] == [1, 2, 3]


def test_iter_json_streams_a_large_log_in_constant_memory(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    line = b'{"type": "x", "text": "' + b"y" * 1000 + b'"}\n'
    with open(log, "wb") as fh:
        for _ in range(8000):
            fh.write(line)
    tracemalloc.start()
    try:
        count = sum(1 for _ in iter_json(log))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 8000
    assert peak < 2 << 20


def test_a_line_over_the_limit_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(enginekit, "MAX_LINE", 1000)
    log = tmp_path / "long.log"
    log.write_bytes(b'{"n": 1}\n{"long": "' + b"z" * 5000 + b'"}\n{"n": 2}\n')
    lines = list(enginekit.iter_lines(log, chunk=256))
    assert lines == [b'{"n": 1}', b'{"n": 2}']


def test_numbers() -> None:
    odd = (-1, True, "3", float("nan"), float("inf"), None)
    assert [as_int(v) for v in (3, 3.9, *odd)] == [3, 3] + [None] * len(odd)
    assert [as_float(v) for v in (3, 0.5, -0.5, False, None)] == [3.0, 0.5, None, None, None]


def test_reset_at_reads_a_printed_zone_and_a_relative_wait() -> None:
    now = dt.datetime(2026, 7, 4, 10, 0, tzinfo=NY).timestamp()
    paris = dt.datetime(2026, 7, 4, 20, 0, tzinfo=ZoneInfo("Europe/Paris")).timestamp()
    assert reset_at("limit reached · resets 8pm (Europe/Paris)", now) == paris
    assert reset_at("Please try again in 2 hours 3 minutes.", now) == now + 2 * 3600 + 180
    assert reset_at("resets 8pm", now, NY) == dt.datetime(2026, 7, 4, 20, 0, tzinfo=NY).timestamp()
    assert reset_at("nothing to see", now) is None
    assert reset_at(None, now) is None  # type: ignore[arg-type]


def test_reset_at_uses_the_host_zone_from_tz(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    tokyo = ZoneInfo("Asia/Tokyo")
    now = dt.datetime(2026, 7, 4, 10, 0, tzinfo=tokyo).timestamp()
    assert reset_at("resets 8pm", now) == dt.datetime(2026, 7, 4, 20, 0, tzinfo=tokyo).timestamp()


def test_detail_is_one_short_line() -> None:
    assert detail("  Error:\n  quota\texhausted  ") == "Error: quota exhausted"
    long = detail("word " * 100)
    assert len(long) == 200 and long.endswith("\u2026") and "\n" not in long
    assert detail("x" * 30, limit=10) == "x" * 9 + "\u2026"
    assert detail("x" * 10, limit=10) == "x" * 10
    assert detail("") == ""

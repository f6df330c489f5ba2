"""The toolkit for engine plugins: reading logs, safe JSON, numbers, reset times and one-line details.

Every helper here is generic: it knows no engine and no engine's wording. A plugin builds its own
parser on top (which records count, which words mean a limit)::

    from aq_core.enginekit import as_int, detail, iter_json, reset_at

    for obj in iter_json(log_path):              # top-level JSON objects only, constant memory
        tokens = as_int(obj.get("input_tokens"))  # None unless a non-negative number
    Failure("usage_limit", reset_at=reset_at(message, outcome.finished_at), detail="myengine: " + detail(message))

Nothing here raises on odd input: a log is whatever the engine (or a crash) left behind.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import datetime

__all__ = ["as_float", "as_int", "detail", "iter_json", "iter_lines", "loads", "reset_at"]

#: Lines longer than this are skipped by ``iter_lines`` rather than held in memory.
MAX_LINE = 16 << 20
_ELLIPSIS = "\u2026"


def iter_lines(path: Path, chunk: int = 256 << 10) -> Iterator[bytes]:
    """Yield the complete lines of a log (without the newline), streaming in constant memory.

    A last line without a newline is a torn write (the process was killed mid-line) and is dropped.
    Lines longer than 16 MiB are skipped rather than held in memory.
    """
    with open(path, "rb") as fh:
        rest = b""
        skipping = False  # inside a line longer than the limit: drop it up to its newline
        while block := fh.read(chunk):
            parts = block.split(b"\n")
            if len(parts) == 1:
                if not skipping:
                    rest += block
                    if len(rest) > MAX_LINE:
                        rest, skipping = b"", True
                continue
            if skipping:
                skipping = False
            else:
                yield rest + parts[0]
            yield from parts[1:-1]
            rest = parts[-1]
            if len(rest) > MAX_LINE:
                rest, skipping = b"", True


def loads(line: bytes | str) -> dict[str, Any] | None:
    """Return ``line`` decoded as one JSON object, or None (not JSON, not an object, too deep, not text)."""
    try:
        value = json.loads(line)
    except (ValueError, RecursionError, TypeError):  # invalid UTF-8 is a ValueError too
        return None
    return value if isinstance(value, dict) else None


def iter_json(path: Path, prefix: bytes = b"{") -> Iterator[dict[str, Any]]:
    """Yield the top-level JSON objects of a JSONL log, skipping every line that is not one.

    Only lines that start with ``prefix`` (after leading spaces) are decoded: the rest is noise the
    engine or the core printed (warnings, tracebacks) and is never fatal. A torn last line is dropped
    (``iter_lines``). Streams in constant memory.
    """
    for line in iter_lines(path):
        stripped = line.lstrip()
        if stripped.startswith(prefix):
            value = loads(stripped)
            if value is not None:
                yield value


def as_int(value: Any) -> int | None:
    """Return ``value`` as a non-negative int, or None when it is not a number (bools are not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if value < 0 or value != value or value == math.inf:
        return None
    return int(value)


def as_float(value: Any) -> float | None:
    """Return ``value`` as a non-negative float, or None when it is not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if value < 0 or value != value or value == math.inf:
        return None
    return float(value)


def reset_at(text: str, now: float, zone: datetime.tzinfo | None = None) -> float | None:
    """Return when a printed limit resets, as epoch seconds, or None when ``text`` names no moment.

    Reads the first phrase that announces a wait or a moment: relative waits ("try again in 2 hours
    3 minutes", "Retry-After: 120", "resets in 45m"), clock times and dates ("resets 8pm
    (America/New_York)", "try again at Jul 5th, 2026 8:19 PM", localised dates such as "10 de jul. de
    2026, 11:52") and API fields (``"resets_at": 1751652000``, ``"retry_after": 30``). A time without a
    zone is read in ``zone`` (default: the host's zone, ``TZ`` first); a printed zone wins; a time of
    day is its next occurrence after ``now`` (SPEC §13). Relative waits count from ``now``: pass when
    the message was printed (``Outcome.finished_at`` when unknown). Never raises.
    """
    try:
        from aq_core.reset_time import parse_reset  # lazily: only a limit needs the parser

        return parse_reset(text, now, zone)
    except Exception:  # the caller is classifying a failure already: a parser bug must not lose the class
        return None


def detail(text: str, limit: int = 200) -> str:
    """Return ``text`` as one line for ``Failure.detail``: whitespace collapsed, at most ``limit`` characters.

    A longer line is cut and ends in "…". Put your engine's name in front (``"myengine: " + detail(msg)``).
    """
    line = " ".join(str(text).split())
    if len(line) > limit:
        line = line[: max(limit - 1, 0)] + _ELLIPSIS
    return line

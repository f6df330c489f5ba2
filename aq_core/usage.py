"""The usage figures an engine reports for one attempt, and the helpers parsers share."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

#: The seven usage fields, in display order. Conventions (engine-formats §0): ``tokens_in`` includes
#: cache reads and writes, ``tokens_cached`` is cache reads only, ``tokens_out`` includes reasoning,
#: ``cost_usd`` is what the engine reported.
USAGE_FIELDS = ("model", "tokens_in", "tokens_out", "tokens_cached", "cost_usd", "turns", "tool_calls")
INT_FIELDS = ("tokens_in", "tokens_out", "tokens_cached", "turns", "tool_calls")


@dataclass
class Usage:
    """Usage found in a log. ``None`` means "the log does not say": never 0 for unknown.

    ``extra`` keeps raw engine figures that do not map onto the seven fields (cache writes, premium
    requests, the engine's session id under ``session_id``, its version); the core records
    ``session_id`` for resuming and ignores the rest of ``extra`` in totals.
    """

    model: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    tokens_cached: int | None = None
    cost_usd: float | None = None
    turns: int | None = None
    tool_calls: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def figures(self) -> dict[str, Any]:
        """Return the known figures among the seven fields (absent ones left out)."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name in USAGE_FIELDS and getattr(self, f.name) is not None
        }

    @property
    def session_id(self) -> str | None:
        value = self.extra.get("session_id")
        return value if isinstance(value, str) and value else None


def iter_lines(path: Path, chunk: int = 256 << 10) -> Iterator[bytes]:
    """Yield the complete lines of a log (without the newline), streaming in constant memory.

    A last line without a newline is a torn write (the process was killed mid-line) and is dropped.
    Lines longer than 16 MiB are skipped rather than held in memory.
    """
    limit = 16 << 20
    with open(path, "rb") as fh:
        rest = b""
        skipping = False  # inside a line longer than the limit: drop it up to its newline
        while block := fh.read(chunk):
            parts = block.split(b"\n")
            if len(parts) == 1:
                if not skipping:
                    rest += block
                    if len(rest) > limit:
                        rest, skipping = b"", True
                continue
            if skipping:
                skipping = False
            else:
                yield rest + parts[0]
            yield from parts[1:-1]
            rest = parts[-1]
            if len(rest) > limit:
                rest, skipping = b"", True


def iter_json_objects(path: Path, prefix: bytes = b"{") -> Iterator[dict[str, Any]]:
    """Yield the top-level JSON objects of a JSONL log, skipping every line that is not one.

    Only lines that start with ``prefix`` (after leading spaces) are decoded: the rest is noise the
    engine or the core printed (warnings, tracebacks) and must never be fatal.
    """
    for line in iter_lines(path):
        stripped = line.lstrip()
        if not stripped.startswith(prefix):
            continue
        try:
            value = json.loads(stripped)
        except (ValueError, RecursionError):
            continue
        if isinstance(value, dict):
            yield value


def as_int(value: Any) -> int | None:
    """Return ``value`` as a non-negative int, or None when it is not a number (bools are not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if value < 0 or value != value or value == float("inf"):
        return None
    return int(value)


def as_float(value: Any) -> float | None:
    """Return ``value`` as a non-negative float, or None when it is not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if value < 0 or value != value or value == float("inf"):
        return None
    return float(value)

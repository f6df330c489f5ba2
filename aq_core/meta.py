"""A job's meta: append-only ``key=value`` lines; the last value of a key wins; attempts in order."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping

TYPE_CHECKING = False  # typing costs `aq add` milliseconds: only type checkers read these
if TYPE_CHECKING:
    from typing import Any

KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")
MAX_VALUE = 4096


def finite(value: str | None) -> float | None:
    """Return ``value`` as a finite number, or None (absent, garbage, nan or inf)."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number - number == 0.0 else None  # nan and inf give nan


def encode_value(value: Any) -> str:
    """Return ``value`` as one line: backslash, newline and carriage return are escaped."""
    if isinstance(value, bool):
        text = "1" if value else "0"
    elif isinstance(value, float):
        text = repr(round(value, 6))
    else:
        text = str(value)
    text = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    return text[:MAX_VALUE]


def decode_value(text: str) -> str:
    if "\\" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            out.append({"n": "\n", "r": "\r", "\\": "\\"}.get(nxt, "\\" + nxt))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def encode_lines(items: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> bytes:
    """Return the lines for ``items`` (``None`` values are skipped); reject keys that are not keys."""
    pairs = items.items() if isinstance(items, Mapping) else items
    lines = []
    for key, value in pairs:
        if value is None:
            continue
        if not KEY.fullmatch(key):
            raise ValueError(f"bad meta key {key!r}")
        lines.append(f"{key}={encode_value(value)}\n")
    return "".join(lines).encode("utf-8")


_LINE = re.compile(r"^([a-z][a-z0-9_]{0,63})=(.*)$", re.MULTILINE)


def parse_lines(data: bytes) -> list[tuple[str, str]]:
    """Return the pairs in a meta file; a torn last line and garbage lines are skipped."""
    end = data.rfind(b"\n")
    if end == -1:
        return []
    # Only "\n" ends a line (the pattern's "." stops there and nowhere else that matters): a value
    # holding \x1c or \u2028 cannot start a line of its own.
    text = data[:end].decode("utf-8", errors="replace")
    pairs = _LINE.findall(text)
    if "\\" in text:
        pairs = [(key, decode_value(value)) for key, value in pairs]
    return pairs


class Meta:
    """The pairs of one job's meta, with the views the core needs."""

    __slots__ = ("pairs", "_last", "size")

    def __init__(self, pairs: list[tuple[str, str]] | None = None, size: int | None = None) -> None:
        self.pairs = pairs if pairs is not None else []
        self._last: dict[str, str] | None = None
        self.size = size  # the bytes it was parsed from, when read from a file (``row_line``)

    def __repr__(self) -> str:
        return f"Meta({self.pairs!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Meta) and other.pairs == self.pairs

    @classmethod
    def from_bytes(cls, data: bytes) -> Meta:
        return cls(parse_lines(data), len(data))

    @property
    def last(self) -> dict[str, str]:
        """The last value of every key (what ``key`` means for the job now)."""
        if self._last is None:
            self._last = dict(self.pairs)
        return self._last

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.last.get(key, default)

    def number(self, key: str, default: float | None = None) -> float | None:
        number = finite(self.last.get(key))
        return default if number is None else number

    def integer(self, key: str, default: int = 0) -> int:
        value = self.number(key)
        return int(value) if value is not None else default

    def runs(self) -> list[dict[str, str]]:
        """Return one dict per attempt: the keys written after each ``attempt=N`` line."""
        runs: list[dict[str, str]] = []
        for key, value in self.pairs:
            if key == "attempt":
                runs.append({"attempt": value})
            elif runs:
                runs[-1][key] = value
        return runs

    def since_last(self, key: str) -> Iterator[tuple[str, str]]:
        """Yield the pairs written after the last line with ``key`` (all pairs if none)."""
        index = 0
        for i, (k, _) in enumerate(self.pairs):
            if k == key:
                index = i
        yield from self.pairs[index:]

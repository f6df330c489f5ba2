"""A small streaming JSON reader: walks one JSON document in constant memory.

Devin's ``--export`` file is one JSON document (not JSONL) that holds the whole conversation, tool
output included, so it can be large. ``events`` yields one event per value with the path that leads
to it and never holds more than a read buffer plus the short strings it was asked to keep: long
strings (messages, tool output) are skipped as they stream past, so their content can never be
mistaken for structure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import IO, Any

#: A string longer than the cap it was read with: its content was skipped, not kept.
TRUNCATED: Any = type("Truncated", (), {"__repr__": lambda self: "TRUNCATED"})()

_WS = re.compile(rb"[ \t\n\r]*")
_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_STRING_RUN = re.compile(rb'(?:[^"\\]++|\\.)*+', re.DOTALL)
_QUOTE = ord('"')
_LITERALS = ((b"true", True), (b"false", False), (b"null", None))
_NUMBER_START = frozenset(b"-0123456789")
_MAX_NUMBER = 400

JSONPath = tuple[Any, ...]
Event = tuple[str, JSONPath, Any]


class JSONStreamError(ValueError):
    """The document is not valid JSON (garbage, or cut short by a killed writer)."""


class _Reader:
    def __init__(self, fh: IO[bytes], chunk: int) -> None:
        self.fh = fh
        self.chunk = chunk
        self.buf = b""
        self.pos = 0
        self.eof = False

    def fill(self, need: int) -> int:
        """Make at least ``need`` unread bytes available (fewer only at end of file)."""
        while len(self.buf) - self.pos < need and not self.eof:
            data = self.fh.read(self.chunk)
            if not data:
                self.eof = True
                break
            self.buf = self.buf[self.pos :] + data
            self.pos = 0
        return len(self.buf) - self.pos

    def skip_ws(self) -> None:
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()
            if self.pos < len(self.buf) or not self.fill(1):
                return

    def peek(self) -> bytes:
        if self.pos >= len(self.buf) and not self.fill(1):
            return b""
        return self.buf[self.pos : self.pos + 1]

    def string(self, cap: int) -> Any:
        """Read a string whose opening quote was consumed; keep it only when at most ``cap`` bytes."""
        parts: list[bytes] | None = []
        size = 0
        while True:
            if self.pos >= len(self.buf) and not self.fill(1):
                raise JSONStreamError("unterminated string")
            # One C-level match consumes plain bytes and escape pairs alike, up to the closing quote.
            end = _STRING_RUN.match(self.buf, self.pos).end()
            if parts is not None:
                size += end - self.pos
                if size > cap:
                    parts = None
                else:
                    parts.append(self.buf[self.pos : end])
            self.pos = end
            if end == len(self.buf):
                continue
            if self.buf[end] == _QUOTE:
                self.pos += 1
                break
            # A backslash is the last byte read: fetch the byte it escapes and go on from it.
            if self.fill(2) < 2:
                raise JSONStreamError("unterminated escape")
        if parts is None:
            return TRUNCATED
        try:
            return json.loads(b'"' + b"".join(parts) + b'"')
        except ValueError as exc:  # a bad escape or invalid UTF-8
            raise JSONStreamError(f"bad string: {exc}") from None

    def number(self) -> int | float:
        self.fill(_MAX_NUMBER + 1)
        match = _NUMBER.match(self.buf, self.pos)
        if match is None or match.end() - self.pos > _MAX_NUMBER:
            raise JSONStreamError("bad number")
        token = match.group()
        self.pos = match.end()
        if any(c in token for c in b".eE"):
            return float(token)
        return int(token)

    def literal(self) -> bool | None:
        self.fill(5)
        for text, value in _LITERALS:
            if self.buf.startswith(text, self.pos):
                self.pos += len(text)
                return value
        raise JSONStreamError("unexpected character")


# Parser states.
_VALUE, _VALUE_OR_END, _KEY, _KEY_OR_END, _AFTER = range(5)


def events(
    fh: IO[bytes], *, key_cap: int = 256, value_cap: int = 4096, max_depth: int = 512, chunk: int = 1 << 16
) -> Iterator[Event]:
    """Yield ``(kind, path, value)`` for every value of the JSON document read from ``fh``.

    ``kind`` is ``scalar`` (``value`` is the str/int/float/bool/None, or ``TRUNCATED`` for a string
    longer than ``value_cap`` bytes), ``start_map``, ``end_map``, ``start_array`` or ``end_array``.
    ``path`` holds the keys and list indices leading to the value (``()`` for the root). Raise
    ``JSONStreamError`` as soon as the input stops being valid JSON, including when it ends early;
    everything yielded before that was read from well-formed text.
    """
    r = _Reader(fh, chunk)
    path: list[Any] = []
    stack: list[bool] = []  # True for an object, False for an array
    state = _VALUE
    while True:
        r.skip_ws()
        c = r.peek()
        if state == _VALUE:
            if c == b"{" or c == b"[":
                if len(stack) >= max_depth:
                    raise JSONStreamError("nested too deeply")
                r.pos += 1
                is_map = c == b"{"
                yield ("start_map" if is_map else "start_array", tuple(path), None)
                stack.append(is_map)
                if is_map:
                    state = _KEY_OR_END
                else:
                    path.append(0)
                    state = _VALUE_OR_END
                continue
            if c == b'"':
                r.pos += 1
                value = r.string(value_cap)
            elif c and c[0] in _NUMBER_START:
                value = r.number()
            elif c:
                value = r.literal()
            else:
                raise JSONStreamError("unexpected end of document")
            yield ("scalar", tuple(path), value)
            state = _AFTER
        elif state == _VALUE_OR_END:
            if c == b"]":
                r.pos += 1
                path.pop()
                stack.pop()
                yield ("end_array", tuple(path), None)
                state = _AFTER
            else:
                state = _VALUE
        elif state == _KEY_OR_END:
            if c == b"}":
                r.pos += 1
                stack.pop()
                yield ("end_map", tuple(path), None)
                state = _AFTER
            else:
                state = _KEY
        elif state == _KEY:
            if c != b'"':
                raise JSONStreamError("expected a key")
            r.pos += 1
            key = r.string(key_cap)
            r.skip_ws()
            if r.peek() != b":":
                raise JSONStreamError("expected ':'")
            r.pos += 1
            path.append(key)
            state = _VALUE
        else:  # _AFTER: a value just ended
            if not stack:
                if c:
                    raise JSONStreamError("data after the document")
                return
            if stack[-1]:
                path.pop()  # the finished member's key
                if c == b",":
                    r.pos += 1
                    state = _KEY
                elif c == b"}":
                    r.pos += 1
                    stack.pop()
                    yield ("end_map", tuple(path), None)
                else:
                    raise JSONStreamError("expected ',' or '}'")
            elif c == b",":
                r.pos += 1
                path[-1] += 1
                state = _VALUE
            elif c == b"]":
                r.pos += 1
                path.pop()
                stack.pop()
                yield ("end_array", tuple(path), None)
            else:
                raise JSONStreamError("expected ',' or ']'")

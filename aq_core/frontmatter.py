"""The quick reader of simple frontmatter: ``key: value`` lines read without importing PyYAML.

It accepts only a small part of YAML, where it gives exactly what ``job.yaml_loader`` gives (a
property test checks it against the loader): one ``key: value`` per line at the start of the line,
a value that is a plain word or phrase, a whole number, a decimal, a date, ``true``/``false``, ``null``, a
quoted string without escapes, or a one-line ``[a, b]`` list of those; blank and comment lines.
Anything else, including every line it does not know for sure, returns None: the caller then reads
the text with PyYAML, so its answer and its error messages stay the same.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False  # typing costs `aq add` milliseconds: only type checkers read these
if TYPE_CHECKING:
    from typing import Any

_KEY = re.compile(r"([a-z][a-z_]*): (.+)")
# A plain scalar with no character YAML gives a meaning to (no ``:``, ``#``, ``,``, brackets, quotes).
_WORDS = re.compile(r"[A-Za-z/][A-Za-z0-9_./@+=-]*(?: [A-Za-z0-9_./@+=-]+)*")
_ITEM = re.compile(r"[A-Za-z/][A-Za-z0-9_./@+=-]*|-{1,2}[A-Za-z][A-Za-z0-9_-]*")
_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]+")
_UNIT = re.compile(r"[1-9][0-9]*[a-z][0-9a-z]*")  # 30m, 1h30m: durations as job files write them
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # a string: the loader reads no timestamps
_QUOTED = re.compile(r'"([ !#-\[\]-~]*)"|\'([ -&(-~]*)\'')  # printable ASCII, no quote or backslash inside
_SPECIAL: dict[str, Any] = {
    **dict.fromkeys(("null", "Null", "NULL"), None),
    **dict.fromkeys(("true", "True", "TRUE"), True),
    **dict.fromkeys(("false", "False", "FALSE"), False),
}


def read_simple(text: str) -> dict[str, Any] | None:
    """The mapping ``text`` holds, or None when it is not simple enough to read without PyYAML."""
    front: dict[str, Any] = {}
    for line in text.split("\n"):
        if not line or line[0] == "#":
            continue
        match = _KEY.fullmatch(line)
        if match is None or match[1] in _SPECIAL or match[1] in front:
            return None
        value = _value(match[2])
        if value is _NO:
            return None
        front[match[1]] = value
    return front or None


_NO = object()


def _value(text: str) -> Any:
    if text[0] == "[" and text[-1] == "]":
        inner = text[1:-1]
        if not inner:
            return []
        items = [_scalar(part, _ITEM) for part in inner.split(", ")]
        return _NO if any(item is _NO for item in items) else items
    return _scalar(text, _WORDS)


def _scalar(text: str, plain: re.Pattern[str]) -> Any:
    quoted = _QUOTED.fullmatch(text)
    if quoted is not None:
        return quoted[1] if quoted[1] is not None else quoted[2]
    if len(text) <= 20:  # a longer number is PyYAML's to read (or to refuse: 5,000 digits)
        if _INT.fullmatch(text):
            return int(text)
        if _DECIMAL.fullmatch(text):
            return float(text)
    if text in _SPECIAL:
        return _SPECIAL[text]
    if plain.fullmatch(text) or _UNIT.fullmatch(text) or _DATE.fullmatch(text):
        return text
    return _NO

"""A finished job's status row, kept as the last line of its meta.

When a job reaches ``done/`` or ``failed/`` in a store of plain files, its row (the JSON text the
rows cache keeps) is appended to its meta as one line (``records.note_finished``). A cold rebuild of
the rows cache (``view_build``) then takes that line instead of computing the row again from every
line before it: about half of a rebuild's work a job.

The line is ``row=<FORMAT> <offset> <summary> <row>``: the row's JSON text as the rows cache keeps it,
after the JSON array of its summary (the fields ``records.SUMMARY`` names, which the status table and
the rollup read), so a rebuild parses the short array, not the whole row. ``offset`` is the size of
the meta the row was computed from, so the line counts only where it starts there and is the meta's
last line: nothing was appended between the read and the line, nor after it. ``FORMAT`` changes
whenever the row ``finished_row`` computes from the same meta does, or its summary's fields
(``tests/test_row_line.py`` pins both): a line of another format is computed again. Meta stays the
record: a missing, torn, stale or too long line costs only the computation.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from aq_core.meta import MAX_VALUE, decode_value

KEY = "row"
FORMAT = 1
_PREFIX = f"{KEY}={FORMAT} ".encode()


def item(text: str, summary: Sequence[Any], offset: int) -> dict[str, str] | None:
    """The meta item keeping row ``text`` (JSON) and its ``summary`` values, computed from the first
    ``offset`` bytes of meta; None when it would not fit in a meta value (such a row is computed at a
    rebuild)."""
    try:
        value = f"{FORMAT} {offset} {_encode(list(summary))} {text}"
    except ValueError:  # a value JSON cannot hold (nan): the row is computed at a rebuild
        return None
    if len(value) + value.count("\\") > MAX_VALUE or "\n" in value or "\r" in value:
        return None
    return {KEY: value}


def kept(data: bytes, job_id: str, state: str, width: int) -> tuple[bytes, list] | None:
    """The row kept at the end of meta ``data`` for ``job_id`` in ``state``: its JSON text (as bytes)
    and its summary (``width`` fields, the first two its id and state); None when the meta does not
    end with such a line where it should."""
    if not data.endswith(b"\n"):
        return None  # empty, or a torn last line
    start = data.rfind(b"\n", 0, -1) + 1
    if not data.startswith(_PREFIX, start):
        return None
    head = start + len(_PREFIX)
    space = data.find(b" ", head)
    if data[head:space] != b"%d" % start:
        return None  # computed from other bytes than those before it
    line = data[space + 1 : -1]
    try:
        text = line.decode("ascii")  # JSON as the rows cache writes it escapes the rest
        if "\\" in text:
            text = decode_value(text)
            line = text.encode("ascii")
        summary, end = _scan(text, 0)
    except (ValueError, StopIteration, RecursionError):  # not ASCII, not JSON, nested beyond reason
        return None
    if (
        type(summary) is not list
        or len(summary) != width
        or summary[0] != job_id
        or summary[1] != state
        or line[end : end + 2] != b" {"
    ):
        return None
    return line[end + 1 :], summary


_encode = json.JSONEncoder(allow_nan=False).encode  # as the rows cache's texts are written
_scan = json.JSONDecoder().scan_once  # ``json.loads`` without its checks and decoding: a rebuild runs it a job

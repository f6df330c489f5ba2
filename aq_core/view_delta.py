"""The view patched for the few finished jobs that changed since it was written (``aq status``).

The view (``views``) is written for one listing of ``done/`` and ``failed/``. When today's listing
differs from it by a few jobs (a job finished, retried, cancelled or touched), this module works out
which listing entries were added and removed (C-level set operations on the listing's columns), where
the added ones go in status order (a binary search in the view's stored order), and builds their rows
from the journal (or meta). The status table and JSON rows are then copied as pieces: runs of the
view's bytes (found by the per-row offsets it keeps) with the added rows' bytes between them. The
added rows' bytes are kept in a small delta file (written to a temporary file and renamed in), tied to
the view by its token, so the next read computes only rows it does not hold yet. A change larger than
``FOLD`` of the rows, a column the change would widen or narrow, or a row that cannot be split into
cells again gives None: the caller builds every row and writes the whole view again.
"""

from __future__ import annotations

import contextlib
import marshal
import os
from array import array
from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate
from pathlib import Path
from typing import Any, BinaryIO, TextIO

FOLD = 0.05  # a delta of more than this share of the rows is folded into a full rewrite
FOLD_MIN = 64  # ... but a small queue may always carry this many changed jobs
_STATES = ("done", "failed")  # the listing's state codes


def delta_path(view: Path) -> Path:
    return view.with_name(view.name + ".delta")


def row_blocks(pairs: list[tuple[list[str], str]], widths: list[int]) -> list[str]:
    """Each row's lines in the status table at ``widths`` (its line, then its sub-line), one string per row."""
    from aq_core.table import row_format

    form = row_format(widths)
    return [form(*cells).rstrip() + ("\n  └ " + sub if sub else "") for cells, sub in pairs]


def offsets(pieces: list[bytes]) -> bytes:
    """Where each of ``pieces`` starts once joined by a one-byte separator (and one past the end)."""
    return array("Q", accumulate((len(p) + 1 for p in pieces), initial=0)).tobytes()


def width_counts(cells: list[list[str]], widths: list[int]) -> list[int]:
    """Per column, how many rows are as wide as the column (a removed row may narrow it only if none is left)."""
    return [
        sum(1 for n in map(len, column) if n == w) for column, w in zip(zip(*cells, strict=True), widths, strict=False)
    ]


class _Order:
    """The view's rows in status order as ``(failed first, queue time, id)`` keys, for ``bisect``."""

    def __init__(self, failed: int, queued: list, ids: list[str]) -> None:
        self.failed, self.queued, self.ids = failed, queued, ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple:
        return (i >= self.failed, self.queued[i], self.ids[i])


class Patched:
    """The view with rows removed and added: what ``views.View`` gives, for ``aq status``."""

    def __init__(self, fh: BinaryIO, head: dict[str, Any], base: int, plan: dict[str, Any]) -> None:
        self.fh, self.base, self.plan = fh, base, plan
        self.head = {**head, "widths": plan["widths"], "count": plan["count"]}
        self._offsets: dict[str, array] = {}

    def _span(self, name: str) -> tuple[int, int]:
        offset, size = self.head["spans"][name]
        return self.base + offset, size

    def _starts(self, name: str) -> array:
        if name not in self._offsets:
            offset, size = self._span(name + "_off")
            self._offsets[name] = array("Q", os.pread(self.fh.fileno(), size, offset))
        return self._offsets[name]

    def pieces(self, name: str) -> Iterator[tuple[int, int] | bytes]:
        """The part's pieces in order: ``(offset, size)`` in the file, or the added rows' bytes."""
        starts, (base, _) = self._starts(name), self._span(name)
        sep = b"\n" if name == "table" else b","
        first = True
        for gap_from, gap_to, added in self.plan["runs"]:
            if gap_to > gap_from:
                if not first:
                    yield sep
                first = False
                yield base + starts[gap_from], starts[gap_to] - starts[gap_from] - 1
            for row in added:
                if not first:
                    yield sep
                first = False
                yield row[name]

    def copy(self, name: str, text: TextIO) -> None:
        """Write the patched part ``name`` ("table" or "status") to ``text``."""
        text.flush()
        out = text.buffer
        out.flush()
        fd = self.fh.fileno()
        for piece in self.pieces(name):
            if isinstance(piece, bytes):
                out.write(piece)
                continue
            out.flush()
            copy_range(fd, out, piece[0], piece[0] + piece[1], self.fh.name)
        out.flush()

    def _spliced(self, name: str, key: str) -> list:
        offset, size = self._span(name)
        kept = marshal.loads(os.pread(self.fh.fileno(), size, offset))
        out: list = []
        for gap_from, gap_to, added in self.plan["runs"]:
            out += kept[gap_from:gap_to]
            out += [row[key] for row in added]
        return out

    def part(self, name: str) -> bytes:
        if name != "cells":  # only the status table's re-layout reads a part of a patched view
            raise KeyError(name)
        return marshal.dumps(self._spliced("cells", "cells"))

    def recent(self) -> Iterator[dict[str, Any]]:
        for job_id, state, finished in self._spliced("recent", "recent"):
            yield {"id": job_id, "state": state, "finished": finished}


def changes(store: Any, view: Any, finished: list, columns: list[list], path: Path) -> tuple[list[int], list] | None:
    """What changed since ``view``'s listing: the removed rows' places in status order (sorted) and the
    added rows (``_added_rows``, with their place ``gap`` in status order); None past ``FOLD``.

    ``path`` is the delta file that keeps the added rows' bytes between reads."""
    from aq_core.status import LAYOUT

    head = view.head
    listing = marshal.loads(view.part("listing"))
    if listing[0] != LAYOUT or "token" not in head:
        return None
    found = _diff(listing[1:], columns)
    if found is None:
        return None
    added, removed = found
    if len(added) + len(removed) > max(FOLD_MIN, FOLD * head["count"]):
        return None
    queued, ids = marshal.loads(view.part("order"))
    order = _Order(head["failed"], queued, ids)
    # A few removed jobs are found by C-level scans; many (a mass retry) by one index of every id.
    where = ids.index if len(removed) < 16 else dict(zip(ids, range(len(ids)), strict=True)).__getitem__
    gone = sorted(where(job_id) for _, job_id, _, _ in removed)
    rows = _added_rows(store, view, path, finished, added)
    if rows is None:
        return None
    for row in rows:
        row["gap"] = bisect_left(order, (row["code"] == 0, row["queued"], row["id"]))
    rows.sort(key=lambda r: (r["code"] == 0, r["queued"], r["id"]))
    return gone, rows


def spliced(gone: list[int], rows: list[dict[str, Any]], count: int) -> list[tuple[int, int, list]]:
    """The runs ``(from, to, added rows)`` of a part of ``count`` rows without the rows at ``gone`` and
    with each of ``rows`` (in order) put before the row at its ``gap``."""
    runs, start, i, dropped = [], 0, 0, set(gone)
    for gap in sorted({*gone, *(r["gap"] for r in rows), count}):
        here = []
        while i < len(rows) and rows[i]["gap"] == gap:
            here.append(rows[i])
            i += 1
        runs.append((start, gap, here))
        start = gap + 1 if gap in dropped else gap
    return runs


def patch(store: Any, view: Any, finished: list, columns: list[list], path: Path) -> Patched | None:
    """``view`` (written for another listing) patched to the listing ``columns`` of ``finished`` for
    ``aq status``, or None (see ``changes``; also when a column would widen or narrow)."""
    from aq_core.status import HEADERS

    found = changes(store, view, finished, columns, path)
    if found is None:
        return None
    gone, rows = found
    head = view.head
    widths, kept = list(head["widths"]), head["widths"]
    if rows and kept:
        widths = [max(w, *(len(row["cells"].split("\0")[i]) for row in rows)) for i, w in enumerate(kept)]
        if widths[:-1] != kept[:-1]:
            return None  # a wider column moves every line: the whole view again
    if gone and kept:
        cells = marshal.loads(view.part("cells"))
        for i, w in enumerate(kept):
            if w <= len(HEADERS[i]):
                continue
            lost = sum(1 for g in gone if len(cells[g].split("\0")[i]) == w)
            grown = sum(1 for row in rows if len(row["cells"].split("\0")[i]) == w)
            if lost and head["counts"][i] - lost + grown <= 0:
                return None  # the widest cell of a column left: the column narrows
    plan = {
        "widths": widths,
        "count": head["count"] - len(gone) + len(rows),
        "runs": spliced(gone, rows, head["count"]),
    }
    return Patched(view.fh, head, view.base, plan)


def _diff(old: list[list], new: list[list]) -> tuple[set[tuple], set[tuple]] | None:
    """The listing entries ``(code, id, queue time, version)`` only in ``new`` and only in ``old``.

    Every pass is a C-level map over a column (no Python call per job): a read after a change runs it."""
    from itertools import compress
    from operator import ne

    old_ids, new_ids = old[1], new[1]
    old_set, new_set = set(old_ids), set(new_ids)
    if len(old_set) != len(old_ids) or len(new_set) != len(new_ids):
        return None  # a job listed twice (mid-move): no patch for such a listing
    touched: set[str] = set()
    for column in (0, 2, 3):  # a new id differs from None in every column
        was = dict(zip(old_ids, old[column], strict=True))
        touched.update(compress(new_ids, map(ne, new[column], map(was.get, new_ids))))
    gone = (old_set - new_set) | (touched & old_set)
    added = set(compress(zip(*new, strict=True), map(touched.__contains__, new_ids)))
    removed = set(compress(zip(*old, strict=True), map(gone.__contains__, old_ids)))
    return added, removed


def _added_rows(store: Any, view: Any, path: Path, finished: list, added: set) -> list[dict[str, Any]] | None:
    """The added entries' bytes in each part: from the delta file when it holds them, else built and kept."""
    from aq_core.records import rows_quick
    from aq_core.status import LAYOUT, finished_cells, row_cells

    token = view.head["token"]
    kept: dict[tuple, dict[str, Any]] = {}
    with contextlib.suppress(OSError, EOFError, ValueError, TypeError):
        with open(path, "rb") as fh:
            data = marshal.loads(fh.read())
        if isinstance(data, tuple) and data[0] == token:
            kept = data[1]
    wanted, names = set(added), {job_id for _, job_id, _, _ in added}
    missing = [e for e in finished if e.id in names]  # a set lookup per job; the rest only for the few
    missing = [e for e in missing if (key := (_code(e), e.id, e.queued, e.version)) in wanted and key not in kept]
    if missing:
        from aq_core.status import row_maker

        rows = rows_quick(store, missing, row_maker(store), finished_cells, LAYOUT)
        for entry, row in zip(missing, rows, strict=True):
            cells, sub = row_cells(row, 0.0, {})
            joined = "\0".join([*cells, sub])
            if joined.count("\0") != 7:
                return None  # a NUL inside a value: its cells cannot be split again
            kept[(_code(entry), entry.id, entry.queued, entry.version)] = {
                "cells": joined,
                "status": row.to_json().encode(),
                "recent": (row["id"], row["state"], row.get("finished")),
            }
    if len(wanted) != len(wanted & kept.keys()):
        return None
    kept = {k: kept[k] for k in wanted}
    if missing:
        _write(path, marshal.dumps((token, kept)))
    widths = view.head["widths"]
    rows = []
    for (code, job_id, queued, _), row in kept.items():
        row = {**row, "code": code, "id": job_id, "queued": queued}
        if widths:
            cells = row["cells"].split("\0")
            try:
                row["table"] = row_blocks([(cells[:7], cells[7])], _at_least(widths, cells))[0].encode("utf-8")
            except UnicodeEncodeError:
                return None
        rows.append(row)
    return rows


def _at_least(widths: list[int], cells: list[str]) -> list[int]:
    return [max(w, len(c)) for w, c in zip(widths, cells[:7], strict=True)]


def _code(entry: Any) -> int:
    return _STATES.index(entry.state.value)


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)  # readers see the old delta or the new one
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def copy_range(fd: int, out: BinaryIO, offset: int, end: int, name: str) -> None:
    """Copy bytes ``offset`` to ``end`` of the file ``fd`` to ``out`` (flushed): ``sendfile`` where the
    kernel allows, else plain reads and writes."""
    with contextlib.suppress(OSError):
        while offset < end:
            sent = os.sendfile(out.fileno(), fd, offset, min(end - offset, 1 << 30))
            if sent <= 0:
                break
            offset += sent
    while offset < end:  # sendfile refused (or stopped short)
        chunk = os.pread(fd, min(end - offset, 1 << 20), offset)
        if not chunk:
            raise OSError(f"{name}: cut short")
        out.write(chunk)
        offset += len(chunk)

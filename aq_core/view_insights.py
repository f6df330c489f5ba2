"""``aq insights`` (and ``--json``) from the view patched for the few finished jobs that changed.

The view keeps the insights JSON rows newest first with per-row offsets, their order as
``(finished, id)`` keys, and the rollup's tally (``rollup``). After a few jobs changed
(``view_delta.changes``: the same rows ``aq status`` patches in, from the delta file or the journal),
the removed rows are found by id and the added ones by a binary search in that order; the output is
copied as runs of the view's bytes with the added rows between them; the rollup is the tally with the
removed rows taken out and the added ones put in. Anything unexpected gives None: the caller builds
every row and writes the view again.
"""

from __future__ import annotations

import json
import marshal
import os
from array import array
from pathlib import Path
from typing import Any

from aq_core.view_delta import Patched, changes, spliced


class InsightsView:
    """What ``aq insights`` prints about the finished jobs: their count, the rollup's JSON text, the
    rows newest first (``copy``, ``first``)."""

    def __init__(self, view: Any, runs: list, count: int, rollup: str) -> None:
        self.count, self.rollup = count, rollup
        self._view = Patched(view.fh, view.head, view.base, {"widths": [], "count": count, "runs": runs})

    def copy(self, text: Any) -> None:
        """Write the rows, comma-separated, to the text stream ``text``."""
        self._view.copy("insights", text)

    def first(self, limit: int) -> list[str]:
        """The JSON texts of the ``limit`` newest rows."""
        view = self._view
        fd, (base, _) = view.fh.fileno(), view._span("insights")
        starts = view._starts("insights")
        out: list[str] = []
        for gap_from, gap_to, added in view.plan["runs"]:
            stop = min(gap_to, gap_from + limit - len(out))
            if stop > gap_from:
                data = os.pread(fd, starts[stop] - starts[gap_from] - 1, base + starts[gap_from])
                out += [
                    data[starts[i] - starts[gap_from] : starts[i + 1] - starts[gap_from] - 1].decode()
                    for i in range(gap_from, stop)
                ]
            out += [row["insights"].decode() for row in added[: limit - len(out)]]
            if len(out) >= limit:
                break
        return out


def whole(view: Any) -> InsightsView:
    """The view's own rows, unpatched."""
    count = view.head["count"]
    return InsightsView(view, [(0, count, [])], count, view.head["rollup"])


def patched(store: Any, view: Any, finished: list, columns: list[list], path: Path) -> InsightsView | None:
    """``view`` (written for another listing) patched to the listing ``columns`` of ``finished``, or None."""
    from aq_core.rollup import apply, finish

    found = changes(store, view, finished, columns, path)
    if found is None:
        return None
    gone, rows = found
    counts = marshal.loads(view.part("tally"))
    status_starts = array("Q", view.part("status_off"))
    offset = view.base + view.head["spans"]["status"][0]
    fd = view.fh.fileno()
    removed = []
    for g in gone:  # the removed rows' JSON, from the status part (few: at most FOLD of the rows)
        size = status_starts[g + 1] - status_starts[g] - 1
        removed.append(json.loads(os.pread(fd, size, offset + status_starts[g])))
    added = []
    for row in rows:
        rec = json.loads(row["status"])
        added.append({"insights": row["status"], "key": (rec.get("finished") or 0, rec["id"]), "rec": rec})
    for rec in removed:
        apply(counts, rec, -1)
    for row in added:
        apply(counts, row["rec"])
    keys, ids = marshal.loads(view.part("iorder"))
    where = ids.index if len(removed) < 16 else dict(zip(ids, range(len(ids)), strict=True)).__getitem__
    igone = sorted(where(rec["id"]) for rec in removed)
    for row in added:
        row["gap"] = _newer_than(keys, ids, row["key"])
    added.sort(key=lambda r: r["key"], reverse=True)
    count = view.head["count"] - len(gone) + len(added)
    return InsightsView(view, spliced(igone, added, view.head["count"]), count, json.dumps(finish(counts)))


def _newer_than(keys: list, ids: list[str], key: tuple) -> int:
    """How many rows of the newest-first order ``(keys, ids)`` come before ``key``: its place."""
    lo, hi = 0, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if (keys[mid], ids[mid]) > key:
            lo = mid + 1
        else:
            hi = mid
    return lo

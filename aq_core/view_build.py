"""Writing the view (``views``) whole, and the cold rebuild that writes it with the rows cache.

The view is assembled from shares: per share of the finished jobs (in status order), each row's
table cells, JSON text and ``(id, state, finished)``, and the share's rollup tally. ``views.save``
makes one share from rows it has; the cold rebuild (no rows cache at all) has forked processes
compute the rows of their share from meta and hand back that share and their part of the rows
cache already serialised, so the parent only joins bytes, lays out the table and sorts the newest
first order: no row object is made in the parent, and no rows cache is built twice.
"""

from __future__ import annotations

import contextlib
import marshal
import os
from typing import Any

from aq_core.store import Entry, State, Store


def share_of_rows(rows: list) -> dict[str, Any]:
    """A share made of status rows (with their cells as ``row_cells`` gives them)."""
    from aq_core.rollup import tally
    from aq_core.status import row_cells

    cells = []
    for row in rows:
        pair = row_cells(row, 0.0, {})
        cells.append("\0".join([*pair[0], pair[1]]))
    texts = [row.to_json().encode() for row in rows]
    recent = [(row["id"], row["state"], row.get("finished")) for row in rows]
    return {"cells": cells, "texts": texts, "recent": recent, "tally": tally(rows), "cache": None}


def _share_of_meta(store: Store, entries: list[Entry]) -> dict[str, Any]:
    """A share computed from the meta of ``entries``, with its part of the rows cache as bytes."""
    from aq_core.records import _entry
    from aq_core.rollup import apply
    from aq_core.status import LAYOUT, finished_cells, row_maker

    compute = row_maker(store)
    cache, cells, texts, recent, counts = {}, [], [], [], {}
    for entry in entries:
        full = compute(entry)
        key, text, summary = _entry(entry, full)
        kept = finished_cells(full)  # what it gives a row of the summary's fields: it reads no other
        cache[entry.id] = (key, summary, kept, LAYOUT, text)
        cells.append(kept)
        texts.append(text.encode())
        recent.append((full["id"], full["state"], full.get("finished")))
        apply(counts, full)
    return {"cells": cells, "texts": texts, "recent": recent, "tally": counts, "cache": marshal.dumps(cache)}


def _merge(counts: dict[str, Any], more: dict[str, Any]) -> None:
    for name, slot in more.items():
        mine = counts.get(name)
        if mine is None:
            counts[name] = slot
            continue
        for field in ("refs", "jobs", "ok", "failed", "est"):
            mine[field] += slot[field]
        mine["durs"] += slot["durs"]
        mine["costs"] += slot["costs"]
        mine["tokens"] = [a + b for a, b in zip(mine["tokens"], slot["tokens"], strict=True)]


def write_view(
    store: Store, key: bytes, finished: list[Entry], shares: list[dict[str, Any]], order: list[Entry] | None = None
) -> bool:
    """Write the view for the listing ``key`` of ``finished``; ``shares`` hold its rows in status order
    (``order``, the entries in status order, when the caller has it)."""
    import json
    from itertools import chain
    from operator import methodcaller

    from aq_core.rollup import finish
    from aq_core.status import HEADERS, in_status_order
    from aq_core.view_delta import offsets, row_blocks
    from aq_core.views import view_path, write_parts

    joined = list(chain.from_iterable(s["cells"] for s in shares))
    texts = list(chain.from_iterable(s["texts"] for s in shares))
    recent = list(chain.from_iterable(s["recent"] for s in shares))
    counts: dict[str, Any] = {}
    for share in shares:
        _merge(counts, share["tally"])
    n = len(joined)
    widths: list[int] = []
    blocks: list[bytes] = []
    width_counts: list[int] = []
    if sum(map(methodcaller("count", "\0"), joined)) == 7 * n:  # else a NUL in a value: no table kept
        split = [text.split("\0") for text in joined]
        columns = list(zip(*split, strict=True))[:7] if n else [()] * 7
        widths = [
            max(len(h), *map(len, column)) if column else len(h) for h, column in zip(HEADERS, columns, strict=True)
        ]
        try:
            blocks = [block.encode("utf-8") for block in row_blocks([(p[:7], p[7]) for p in split], widths)]
            width_counts = [list(map(len, column)).count(w) for column, w in zip(columns, widths, strict=True)]
        except UnicodeEncodeError:  # a value print() would refuse too: such a table is always rendered anew
            blocks, widths = [], []
    # Newest first, as ``insights.select`` orders them: by finish time (none: 0), then id, descending.
    keys = [(done_at or 0, job_id) for job_id, _, done_at in recent]
    newest = sorted(range(n), key=keys.__getitem__, reverse=True)
    itexts = [texts[i] for i in newest]
    order = in_status_order(finished) if order is None else order
    parts: dict[str, bytes] = {
        "listing": key,
        "cells": marshal.dumps(joined),
        "table": b"\n".join(blocks),
        "table_off": offsets(blocks),
        "status": b",".join(texts),
        "status_off": offsets(texts),
        "insights": b",".join(itexts),
        "insights_off": offsets(itexts),
        "iorder": marshal.dumps(([keys[i][0] for i in newest], [keys[i][1] for i in newest])),
        "tally": marshal.dumps(counts),
        "recent": marshal.dumps(recent),
        "order": marshal.dumps(([e.queued for e in order], [e.id for e in order])),
    }
    head = {
        "widths": widths,
        "count": n,
        "rollup": json.dumps(finish(counts)),
        "token": os.urandom(8).hex(),
        "failed": sum(1 for e in order if e.state is State.FAILED),
        "counts": width_counts,
    }
    return write_parts(view_path(store), head, parts)


def can_rebuild(store: Store, finished: list[Entry]) -> bool:
    """Whether ``rebuild`` is the way to a view: no rows cache at all, a store of plain files."""
    from aq_core.records import cache_path

    return (
        bool(finished)
        and getattr(store, "fork_safe", False)
        and getattr(store, "finished_rows", None) is None
        and not cache_path(store).exists()
    )


def rebuild(store: Store, key: bytes, finished: list[Entry]) -> bool:
    """Compute every finished job's row from meta (over forked processes when there are many) and write
    the rows cache and the view from the shares; False when the view could not be written."""
    from aq_core.records import _fork_parts, _take, cache_path, fork_share, journal_path, reap_share, save_frames
    from aq_core.status import in_status_order

    entries = in_status_order(finished)
    _, taken = _take(journal_path(store))  # every row is computed from meta: the journal's rows are not needed
    parts = _fork_parts(store, len(entries))
    step = -(-len(entries) // parts)
    chunks = [entries[i : i + step] for i in range(0, len(entries), step)]
    children = [fork_share(lambda chunk=chunk: _share_of_meta(store, chunk)) for chunk in chunks[1:]]
    shares = [_share_of_meta(store, chunks[0])] if chunks else []
    for (pid, out), chunk in zip(children, chunks[1:], strict=True):
        share = reap_share(pid, out)
        ok = isinstance(share, dict) and len(share["cells"]) == len(chunk)
        shares.append(share if ok else _share_of_meta(store, chunk))
    save_frames(cache_path(store), [share["cache"] for share in shares])
    if taken is not None:
        with contextlib.suppress(OSError):
            os.unlink(taken)
    return write_view(store, key, finished, shares, entries)

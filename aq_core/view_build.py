"""Writing the view (``views``) whole, and the cold rebuild that writes it with the rows cache.

The view is assembled from shares: per share of the finished jobs (in status order), what the view
keeps of its rows, already as bytes: the table's lines, the JSON texts in status order and newest
first (each with per-row offsets), the cells and the ``(id, state, finished)`` of each row (list
bodies marshalled with version 2, which has no references, so they concatenate into one list), and
the rollup's tally. ``views.save`` makes one share from rows it has; the cold rebuild (no rows cache
at all) has forked processes (``view_fork``) compute the rows of their share from meta, agree on the
table's column widths and lay out, join and write their bytes, and the parent does its own share the
same way meanwhile. The parent then only concatenates: a share laid out at other widths (its process
died before the widths were agreed) is laid out again, and the newest-first order is a merge of the
shares' own, copied in runs. No row object is made in the parent, and no rows cache is built twice.
"""

from __future__ import annotations

import contextlib
import marshal
import os
from array import array
from itertools import accumulate
from operator import itemgetter, methodcaller
from typing import Any

from aq_core.store import Entry, State, Store


def _body(items: list) -> bytes:
    """``items`` marshalled (version 2) without the list's head: such bodies concatenate."""
    return marshal.dumps(items, 2)[5:]


def _listed(bodies: list[bytes], count: int) -> bytes:
    """The marshal of one list made of list ``bodies`` holding ``count`` items in all."""
    return b"[" + count.to_bytes(4, "little") + b"".join(bodies)


def _offsets(lengths: Any) -> bytes:
    """Where each piece starts once joined by a one-byte separator (and one past the end), from lengths."""
    return array("Q", accumulate((n + 1 for n in lengths), initial=0)).tobytes()


def _lay_out(split: list[list[str]], widths: list[int]) -> list[bytes] | None:
    """Each row's table lines at ``widths`` as bytes; None for a value print() would refuse too."""
    from aq_core.view_delta import row_blocks

    try:
        return [block.encode("utf-8") for block in row_blocks([(p[:7], p[7]) for p in split], widths)]
    except UnicodeEncodeError:  # such a table is always rendered anew
        return None


def finish_share(
    cells: list[str], texts: list[bytes], recent: list[tuple], counts: dict, cache: Any = None, agree: Any = None
) -> dict:
    """A share of the view from its rows' NUL-joined ``cells``, JSON ``texts``, ``(id, state, finished)``
    and rollup tally ``counts`` (and its part of the rows cache, marshalled, or None). Its table is laid
    out at the widths ``agree(own widths)`` gives (every share's, agreed: ``view_fork``), else at its own."""
    from aq_core.status import HEADERS

    n = len(cells)
    share: dict[str, Any] = {"n": n, "cells": _body(cells), "recent": _body(recent), "tally": counts}
    share.update(cache=cache, widths=None, counts=None, table=b"", table_off=b"")
    widths: list[int] | None = None
    if n and sum(map(methodcaller("count", "\0"), cells)) == 7 * n:  # else a NUL in a value: no table
        split = [text.split("\0") for text in cells]
        columns = list(zip(*split, strict=True))[:7]
        widths = [max(len(h), *map(len, column)) for h, column in zip(HEADERS, columns, strict=True)]
    agreed = agree(widths) if agree is not None else None
    if widths is not None:
        if isinstance(agreed, list) and len(agreed) == 7 and all(map(int.__le__, widths, agreed)):
            widths = agreed
        blocks = _lay_out(split, widths)
        if blocks is not None:
            share["widths"], share["table"], share["table_off"] = widths, b"\n".join(blocks), _offsets(map(len, blocks))
            share["counts"] = [list(map(len, column)).count(w) for column, w in zip(columns, widths, strict=True)]
    share["status"], share["status_off"] = b",".join(texts), _offsets(map(len, texts))
    # Newest first, as ``insights.select`` orders them: by finish time (none: 0), then id, descending.
    keys = [(done_at or 0, job_id) for job_id, _, done_at in recent]
    newest = sorted(range(n), key=keys.__getitem__, reverse=True)
    itexts = [texts[i] for i in newest]
    share["insights"], share["insights_off"] = b",".join(itexts), _offsets(map(len, itexts))
    share["ikeys"] = [keys[i] for i in newest]
    return share


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
    return finish_share(cells, texts, recent, tally(rows))


def _rows_from(store: Store) -> Any:
    """``row_of(job_id, state)``: a finished job's row as its JSON text (UTF-8) and its summary fields
    (``records.SUMMARY``): those its meta keeps as its last line (``row_line``) where the store reads
    meta as bytes, else computed."""
    from aq_core.finished_row import finished_row
    from aq_core.meta import parse_lines
    from aq_core.records import _ENCODE_ROW, SUMMARY
    from aq_core.row_line import kept

    read, read_bytes, summarise, width = (
        store.read_meta,
        getattr(store, "read_meta_bytes", None),
        itemgetter(*SUMMARY),
        len(SUMMARY),
    )

    def computed(job_id: str, state: str, pairs: list[tuple[str, str]] | None = None) -> tuple[bytes, Any]:
        full = finished_row(job_id, state, read(job_id).pairs if pairs is None else pairs)
        return _ENCODE_ROW(full).encode(), summarise(full)

    def row_of(job_id: str, state: str) -> tuple[bytes, Any]:
        data = read_bytes(job_id)
        return kept(data, job_id, state, width) or computed(job_id, state, parse_lines(data))

    return computed if read_bytes is None else row_of


def _share_of_meta(store: Store, entries: list[Entry], agree: Any = None) -> dict[str, Any]:
    """A share computed from the meta of ``entries``, with its part of the rows cache as bytes (its
    table's widths agreed through ``agree``, see ``finish_share``)."""
    from aq_core.records import SUMMARY
    from aq_core.rollup import apply
    from aq_core.status import LAYOUT, finished_cells

    # ``status.row_maker`` and ``records._entry`` inlined (every entry here is finished): a rebuild
    # runs this for every job, and each state's value looked up once, not twice a job.
    values = {State.DONE: "done", State.FAILED: "failed"}
    row_of = _rows_from(store)
    cache, cells, texts, recent, counts = {}, [], [], [], {}
    for entry in entries:
        job_id, state, _, version = entry
        state = values[state]
        raw, summary = row_of(job_id, state)
        fields = dict(zip(SUMMARY, summary, strict=True))
        kept = finished_cells(fields)  # a row's summary fields are all it reads
        cache[job_id] = ((state, version), tuple(summary), kept, LAYOUT, raw.decode())
        cells.append(kept)
        texts.append(raw)
        recent.append((job_id, state, fields["finished"]))
        apply(counts, fields)  # it reads summary fields only too
    return finish_share(cells, texts, recent, counts, marshal.dumps(cache), agree)


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


def _joined(shares: list[dict[str, Any]], name: str, sep: bytes) -> tuple[list[bytes], bytes]:
    """The shares' part ``name`` joined by ``sep`` (as pieces to write), and its per-row offsets."""
    pieces: list[bytes] = []
    starts = array("Q", [0])
    for share in shares:
        if not share["n"]:
            continue
        if pieces:
            pieces.append(sep)
        pieces.append(share[name])
        base = starts.pop()
        more = array("Q", share[name + "_off"])
        starts.extend([start + base for start in more] if base else more)
    return pieces, starts.tobytes()


def _table(shares: list[dict[str, Any]]) -> tuple[list[int], list[int], list[bytes], bytes]:
    """The table's widths, per column how many rows are that wide, its lines (pieces) and offsets: each
    share's own lines where its widths are the table's, else laid out again from its cells."""
    if any(share["n"] and share["widths"] is None for share in shares):
        return [], [], [], array("Q", [0]).tobytes()
    from aq_core.status import HEADERS

    kept = [share for share in shares if share["n"]]
    widths = [max(len(h), *(share["widths"][i] for share in kept)) for i, h in enumerate(HEADERS)]
    counts = [0] * len(widths)
    for share in kept:
        if share["widths"][:-1] != widths[:-1]:  # the last column is not padded: its lines stand
            split = [text.split("\0") for text in marshal.loads(_listed([share["cells"]], share["n"]))]
            blocks = _lay_out(split, widths)
            if blocks is None:
                return [], [], [], array("Q", [0]).tobytes()
            share["table"], share["table_off"] = b"\n".join(blocks), _offsets(map(len, blocks))
        # A share narrower than the table has no row as wide as it in that column.
        own = zip(counts, share["counts"], share["widths"], widths, strict=True)
        counts = [c + (n if w == width else 0) for c, n, w, width in own]
    pieces, starts = _joined(kept, "table", b"\n")
    return widths, counts, pieces, starts


def _newest(shares: list[dict[str, Any]]) -> tuple[list[bytes], bytes, list, list]:
    """Every row newest first: the shares' own newest-first orders merged, their bytes taken in runs;
    the pieces (written one after another, not joined), their per-row offsets, and each row's finish time (none: 0) and id in that order."""
    from bisect import bisect_right
    from itertools import chain

    keys = list(chain.from_iterable(share["ikeys"] for share in shares))
    if len(shares) == 1:
        share = shares[0]
        return [share["insights"]], share["insights_off"], [k[0] for k in keys], [k[1] for k in keys]
    order = sorted(range(len(keys)), key=keys.__getitem__, reverse=True)  # a merge of sorted runs
    bases = list(accumulate((share["n"] for share in shares), initial=0))
    runs, first, last = [], -1, -1
    for at in order:  # runs of consecutive rows of one share
        if at != last or at in bases:
            if first >= 0:
                runs.append((first, last))
            first = at
        last = at + 1
    if first >= 0:
        runs.append((first, last))
    starts = [array("Q", share["insights_off"]) for share in shares]
    views = [memoryview(share["insights"]) for share in shares]
    pieces: list[Any] = []
    offsets = array("Q")
    base = 0
    for first, last in runs:
        s = bisect_right(bases, first) - 1
        own, lo, hi = starts[s], first - bases[s], last - bases[s]
        if pieces:
            pieces.append(b",")
        pieces.append(views[s][own[lo] : own[hi] - 1])
        shift = base - own[lo]
        offsets.extend([start + shift for start in own[lo:hi]])
        base += own[hi] - own[lo]
    offsets.append(base)
    ordered = list(map(keys.__getitem__, order))
    return pieces, offsets.tobytes(), list(map(itemgetter(0), ordered)), list(map(itemgetter(1), ordered))


def write_view(
    store: Store, key: bytes, finished: list[Entry], shares: list[dict[str, Any]], order: list[Entry] | None = None
) -> bool:
    """Write the view for the listing ``key`` of ``finished``; ``shares`` hold its rows in status order
    (``order``, the entries in status order, when the caller has it)."""
    import json

    from aq_core.rollup import finish
    from aq_core.status import in_status_order
    from aq_core.views import view_path, write_parts

    n = sum(share["n"] for share in shares)
    counts: dict[str, Any] = {}
    for share in shares:
        _merge(counts, share["tally"])
    widths, width_counts, table, table_off = _table(shares)
    status, status_off = _joined(shares, "status", b",")
    insights, insights_off, done_at, ids = _newest(shares)
    order = in_status_order(finished) if order is None else order
    parts: dict[str, Any] = {
        "listing": [key],
        "cells": [_listed([share["cells"] for share in shares], n)],
        "table": table,
        "table_off": [table_off],
        "status": status,
        "status_off": [status_off],
        "insights": insights,
        "insights_off": [insights_off],
        "iorder": [marshal.dumps((done_at, ids), 2)],
        "tally": [marshal.dumps(counts)],
        "recent": [_listed([share["recent"] for share in shares], n)],
        "order": [marshal.dumps((list(map(itemgetter(2), order)), list(map(itemgetter(0), order))), 2)],
    }
    head = {
        "widths": widths,
        "count": n,
        "rollup": json.dumps(finish(counts)),
        "token": os.urandom(8).hex(),
        "failed": list(map(itemgetter(1), order)).count(State.FAILED),
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
    from aq_core.records import _fork_parts, _take, cache_path, journal_path
    from aq_core.status import in_status_order
    from aq_core.view_fork import CacheFile, Child, agree_with

    entries = in_status_order(finished)
    _, taken = _take(journal_path(store))  # every row is computed from meta: the journal's rows are not needed
    parts = _fork_parts(store, len(entries))
    step = -(-len(entries) // parts)
    chunks = [entries[i : i + step] for i in range(0, len(entries), step)]
    children = [Child(lambda agree, chunk=chunk: _share_of_meta(store, chunk, agree)) for chunk in chunks[1:]]
    shares = [_share_of_meta(store, chunks[0], agree_with(children))] if chunks else []
    cache = CacheFile(cache_path(store))
    for share in shares:  # the parent's own frame written while the others still finish theirs
        cache.add(share.pop("cache"))
    for child, chunk in zip(children, chunks[1:], strict=True):
        share = child.reap(len(chunk))
        if share is None:  # the child failed: its share done here (its table laid out again if need be)
            share = _share_of_meta(store, chunk)
            cache.add(share.pop("cache"))
        else:
            cache.put(share.pop("frame"))
        child.out.close()
        shares.append(share)
    cache.close()
    if taken is not None:
        with contextlib.suppress(OSError):
            os.unlink(taken)
    return write_view(store, key, finished, shares, entries)

"""What ``aq status`` and ``aq insights --json`` print about the finished jobs, kept ready as bytes.

The rows cache (``records``) keeps each finished job's record; this file keeps what the commands print
for all of them at once: the status table's lines and JSON rows in status order, the insights JSON rows
newest first and the per-engine rollup. It is valid for one listing of ``done/`` and ``failed/``: each
job's id, state, queue time and version (the key the rows cache trusts), kept in listing order.
When today's listing is the same, the command copies the stored bytes to its output with no
Python object per job; otherwise it builds the rows as before and writes the file again. Like the rows
cache, it is never the only record of anything: delete it and the next read writes it again.
"""

from __future__ import annotations

import contextlib
import json
import marshal
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from aq_core.records import FORMAT, cache_path
from aq_core.status import HEADERS, LAYOUT, body_lines, finished_entries, row_cells
from aq_core.store import Entry, State, Store
from aq_core.view_delta import copy_range, delta_path

_MAGIC = b"aq-view-5\n"  # the layout of this file: a change makes older files unread
PARTS = (
    "listing",
    "table",
    "cells",
    "status",
    "insights",
    "recent",
    "order",
    "table_off",
    "status_off",
    "insights_off",
    "iorder",
    "tally",
)


def view_path(store: Store) -> Path:
    return cache_path(store).with_name(f"view-{FORMAT}-py{sys.version_info[0]}{sys.version_info[1]}.bin")


def listing_columns(finished: list[Entry]) -> list[list]:
    """The finished jobs' listing as columns: state codes (done 0, failed 1), ids, queue times, versions."""
    from operator import itemgetter

    # Columns built by C-level maps: this runs for every job on every read.
    code = {State.DONE: 0, State.FAILED: 1}.__getitem__
    return [list(map(code, map(itemgetter(1), finished))), *(list(map(itemgetter(i), finished)) for i in (0, 2, 3))]


def listing_key(finished: list[Entry], columns: list[list] | None = None) -> bytes | None:
    """The finished jobs' listing as bytes: ids, states, queue times and versions, in listing order.

    The view keeps these bytes and is used only when they are equal (no digest: equal is exact)."""
    try:
        # Version 2 marks no object as shared: the bytes depend on the values only, not on how many
        # holders each value has (a store's own columns and an entry list's give the same key).
        return marshal.dumps((LAYOUT, *(columns or listing_columns(finished))), 2)
    except ValueError:  # a version marshal cannot write: this store gets no view
        return None


class View:
    """An open view file whose listing matched: its head, and its parts copied out by offset."""

    def __init__(self, fh: BinaryIO, head: dict[str, Any], base: int) -> None:
        self.fh, self.head, self.base = fh, head, base

    def part(self, name: str) -> bytes:
        offset, size = self.head["spans"][name]
        return os.pread(self.fh.fileno(), size, self.base + offset)

    def copy(self, name: str, text: TextIO) -> None:
        """Write a part to the text stream ``text`` (flushed first, then its bytes): ``sendfile`` where
        the kernel allows, else reads and writes."""
        offset, size = self.head["spans"][name]
        offset += self.base
        text.flush()
        out = text.buffer
        out.flush()
        copy_range(self.fh.fileno(), out, offset, offset + size, self.fh.name)
        out.flush()

    def recent(self) -> Iterator[dict[str, Any]]:
        """Each finished job's id, state and finish time in status order (for the daily budgets)."""
        for job_id, state, finished in marshal.loads(self.part("recent")):
            yield {"id": job_id, "state": state, "finished": finished}


def open_view(store: Store, key: bytes | None, any_listing: bool = False) -> View | None:
    """The view written for the listing ``key`` (for any listing with ``any_listing``), or None (none,
    another listing, unreadable)."""
    if key is None:
        return None
    try:
        fh = open(view_path(store), "rb")  # noqa: SIM115 - the View owns it until the process ends
    except OSError:
        return None
    try:
        start = fh.read(len(_MAGIC) + 4)
        size = int.from_bytes(start[len(_MAGIC) :], "little")
        if start[: len(_MAGIC)] != _MAGIC:
            raise ValueError("not a view")
        head = marshal.loads(fh.read(size))
        if not isinstance(head, dict) or set(head.get("spans", ())) != set(PARTS):
            raise ValueError("another layout")
        view = View(fh, head, len(_MAGIC) + 4 + size)
        if os.fstat(fh.fileno()).st_size != view.base + sum(size for _, size in head["spans"].values()):
            raise ValueError("cut short")  # checked before any byte of it is copied out
        if any_listing:
            return view
        if head["spans"]["listing"][1] != len(key) or view.part("listing") != key:
            raise ValueError("another listing")
        return view
    except (OSError, EOFError, ValueError, TypeError):
        fh.close()
        return None


def save(store: Store, key: bytes | None, rows: list, finished: list[Entry]) -> None:
    """Write the view of the finished ``rows`` (in status order, with their cells) for the listing ``key``
    of the ``finished`` entries."""
    if key is None:
        return
    from aq_core.view_build import share_of_rows, write_view

    write_view(store, key, finished, [share_of_rows(rows)])


def write_parts(path: Path, head: dict[str, Any], parts: dict[str, Any]) -> bool:
    """Write a view file: the magic, the head (with each part's span), the parts (each bytes, or a list
    of pieces written one after another: no join of a part made of shares); then its delta goes."""
    pieces = {name: [parts[name]] if isinstance(parts[name], bytes) else parts[name] for name in PARTS}
    spans, offset = {}, 0
    for name in PARTS:
        size = sum(map(len, pieces[name]))
        spans[name] = (offset, size)
        offset += size
    data = marshal.dumps({**head, "spans": spans})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            _write_all(fd, [_MAGIC + len(data).to_bytes(4, "little") + data, *(p for n in PARTS for p in pieces[n])])
        finally:
            os.close(fd)
        os.replace(tmp, path)  # readers see the old file or the new one, never half of one
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return False
    with contextlib.suppress(OSError):  # patches of the view replaced (their token no longer matches)
        os.unlink(delta_path(path))
    return True


def _write_all(fd: int, pieces: list[Any]) -> None:
    """Write ``pieces`` (bytes-like) to ``fd`` one after another, many to a call (``writev``)."""
    pieces = [memoryview(piece).cast("B") for piece in pieces if len(piece)]
    at = 0
    while at < len(pieces):
        batch = pieces[at : at + 1024]  # IOV_MAX
        sent = os.writev(fd, batch)
        if not sent:
            raise OSError("nothing written")
        for piece in batch:  # a short write (a signal, a full disk): resume inside the piece it stopped in
            if sent < len(piece):
                pieces[at] = piece[sent:]
                break
            sent -= len(piece)
            at += 1


def _from_server(store: Store, what: str, limit: int = 20) -> bool:
    """A store that prints a read itself (PostgreSQL, from the rows its server keeps) does, on a host
    with no rows cache: that host builds none (see ``store_pg.reads``)."""
    read = getattr(store, "print_read", None)
    return read is not None and not cache_path(store).exists() and read(what, limit)


def _split(entries: list[Entry]) -> tuple[list[Entry], list[Entry]]:
    live = [e for e in entries if e.state is State.INBOX or e.state is State.BUILDING]
    finished = [e for e in entries if e.state is State.DONE or e.state is State.FAILED]
    return live, finished


def stdout_takes_bytes() -> bool:
    """Whether the view's bytes may go to stdout as they are: a byte stream under it, UTF-8 text."""
    import codecs

    if getattr(sys.stdout, "buffer", None) is None:  # e.g. redirected to a StringIO
        return False
    try:
        return codecs.lookup(sys.stdout.encoding or "").name == "utf-8"
    except LookupError:
        return False


def print_status(store: Store, as_json: bool) -> None:
    """``aq status`` (``--json``): the finished jobs from the view when it matches the listing."""
    from aq_core.status import engine_rows, status_rows

    if _from_server(store, "status-json" if as_json else "status"):
        return
    takes_bytes = stdout_takes_bytes()
    status_columns = getattr(store, "status_columns", None)  # a store's own columns (PostgreSQL)
    if status_columns is not None and takes_bytes:
        live, columns = status_columns()
        key = listing_key([], columns) if columns[0] else None
        view = open_view(store, key)
        if view is not None and (as_json or view.head["widths"]):  # no object per finished job
            _print_from_view(store, view, live, lambda: _states_of(live, columns), as_json)
            return
        finished = _entries_of(columns)  # the view is patched or rebuilt from the same listing
        entries = live + finished
    else:
        entries = store.scan()
        live, finished = _split(entries)
        columns = listing_columns(finished)
        key = listing_key(finished, columns) if finished else None
        view = open_view(store, key) if takes_bytes else None
    if view is None and key is not None and takes_bytes:
        view = _patched(store, key, finished, columns) or _rebuilt(store, key, finished)
    if view is not None and not as_json and not view.head["widths"]:
        view = None
    if view is None:
        rows = status_rows(store, entries=entries)
        save(store, key, rows[len(live) :], finished)
        engines = engine_rows(store, rows)
        if as_json:
            write_json_rows(rows, engines)
        else:
            _print_table(rows, engines)
        return
    _print_from_view(store, view, live, lambda: {e.id: e.state.value for e in entries}, as_json)


def _entries_of(columns: list[list]) -> list[Entry]:
    """The finished entries of a listing's ``columns`` (``listing_columns``' inverse)."""
    from itertools import repeat

    states = map((State.DONE, State.FAILED).__getitem__, columns[0])
    return list(map(tuple.__new__, repeat(Entry), zip(columns[1], states, columns[2], columns[3], strict=True)))


def _states_of(live: list[Entry], columns: list[list]) -> dict[str, str]:
    """Every job's state by id, from the live entries and the finished listing's columns."""
    states = dict(zip(columns[1], map(("done", "failed").__getitem__, columns[0]), strict=True))
    states.update((e.id, e.state.value) for e in live)
    return states


def _print_from_view(store: Store, view: View, live: list[Entry], states_of: Any, as_json: bool) -> None:
    """``aq status`` with the finished jobs from ``view``: the ``live`` entries' rows rendered, every
    job's state (``states_of()``) only when a waiting job waits for others."""
    import itertools

    from aq_core.status import engine_rows, status_rows

    rows = status_rows(store, entries=live)
    engines = engine_rows(store, itertools.chain(rows, view.recent()))
    out = sys.stdout
    if as_json:
        out.write('{"jobs": [')
        out.write(",".join([row.to_json() for row in rows]) + ("," if rows else ""))
        view.copy("status", out)
        out.write(f'], "engines": {json.dumps(engines)}}}\n')
        return
    _print_table_with(view, rows, states_of)
    from aq_core.status import render_engines

    text = render_engines(engines)
    if text:
        print("\n" + text)


def _patched(store: Store, key: bytes, finished: list[Entry], columns: list[list]) -> Any:
    """The view written for an earlier listing, patched to this one; None when a full rewrite is due."""
    from aq_core.view_delta import patch

    base = open_view(store, key, any_listing=True)
    if base is None:
        return None
    try:
        return patch(store, base, finished, columns, delta_path(view_path(store)))
    except (OSError, EOFError, ValueError, TypeError, KeyError, IndexError):
        return None  # a view of another shape or cut short: rebuilt as if there were none


def _rebuilt(store: Store, key: bytes, finished: list[Entry]) -> View | None:
    """With no rows cache at all: every row computed from meta in shares (``view_build``), and the view
    written from them; None when that is not the way (the caller builds the rows)."""
    from aq_core import view_build

    if not view_build.can_rebuild(store, finished) or not view_build.rebuild(store, key, finished):
        return None
    return open_view(store, key)


def _print_table(rows: list, engines: list) -> None:
    from aq_core.status import render_engines, render_table

    print(render_table(rows))
    text = render_engines(engines)
    if text:
        print("\n" + text)


def _print_table_with(view: View, rows: list, states_of: Any) -> None:
    """The status table: the live ``rows`` rendered, the finished jobs' lines from ``view``."""
    from aq_core.table import column_widths, head_lines

    states: dict[str, str] = {}
    if any(row.get("after") for row in rows):  # what a waiting job waits for needs every job's state
        states = states_of()
    pairs = [row_cells(row, time.time(), states) for row in rows]
    kept = view.head["widths"]
    widths = [max(a, b) for a, b in zip(column_widths([c for c, _ in pairs], HEADERS), kept, strict=True)]
    out = sys.stdout
    out.write("\n".join([*head_lines(HEADERS, widths), *body_lines(pairs, widths)]) + "\n")
    if widths[:-1] == kept[:-1]:  # the last column is not padded: only the rule shows its width
        view.copy("table", out)
    else:  # a live row widened a column: the finished lines again at the new widths
        finished = []
        for text in marshal.loads(view.part("cells")):
            cells = text.split("\0")
            finished.append((cells[:7], cells[7]))
        out.write("\n".join(body_lines(finished, widths)))
    out.write("\n")


def _insights_view(store: Store) -> tuple[Any, list[Entry] | None]:
    """The finished jobs for ``aq insights``: the view when it matches their listing, else the view
    patched (``view_insights``), else rebuilt from shares, else None (the caller builds the rows); and
    the finished entries listed on the way (None when the store's own columns matched the view)."""
    from aq_core import view_insights

    columns_of = getattr(store, "finished_columns", None)
    if columns_of is not None:  # a store's own columns (PostgreSQL): no object per job when the view matches
        columns = columns_of()
        key = listing_key([], columns) if columns[0] else None
        view = open_view(store, key)
        if view is not None:
            return view_insights.whole(view), None
        finished = _entries_of(columns)
    else:
        finished = finished_entries(store)
        columns = listing_columns(finished)
        key = listing_key(finished, columns) if finished else None
        view = open_view(store, key)
        if view is not None:
            return view_insights.whole(view), finished
    if key is None:
        return None, finished
    base = open_view(store, key, any_listing=True)
    if base is not None:
        try:
            found = view_insights.patched(store, base, finished, columns, delta_path(view_path(store)))
        except (OSError, EOFError, ValueError, TypeError, KeyError, IndexError):
            found = None  # a view of another shape or cut short: rebuilt as if there were none
        if found is not None:
            return found, finished
    view = _rebuilt(store, key, finished)
    return (view_insights.whole(view) if view is not None else None), finished


def print_insights_json(store: Store) -> None:
    """``aq insights --json`` with no filter: every finished job, newest first, and the rollup."""
    from aq_core import insights
    from aq_core.status import finished_rows as rows_of

    if _from_server(store, "insights-json"):
        return
    view, finished = _insights_view(store) if stdout_takes_bytes() else (None, None)
    if view is None:
        if finished is None:
            finished = finished_entries(store)
        key = listing_key(finished) if finished else None
        rows = rows_of(store, finished)
        save(store, key, rows, finished)
        recs = insights.select(rows)
        write_json_rows(recs, insights.rollup(recs))
        return
    out = sys.stdout
    out.write('{"jobs": [')
    view.copy(out)
    out.write(f'], "engines": {view.rollup}}}\n')


def print_insights_text(store: Store, limit: int) -> bool:
    """``aq insights`` with no filter from the view (patched when a few jobs changed), or from the server
    on a host with no rows cache (PostgreSQL); False when there is none for this listing."""
    if limit < 0:
        return False
    if _from_server(store, "insights", limit):
        return True
    view, _ = _insights_view(store)
    if view is None:
        return False
    from aq_core.insights import render_overview

    recs = [json.loads(text) for text in view.first(limit)]
    print(render_overview(recs, json.loads(view.rollup), limit=limit, total=view.count))
    return True


def finished_rows(store: Store) -> list:
    """Every finished job's row in status order (the rows cache), and the view written for them."""
    from aq_core.status import finished_rows as rows_of

    finished = finished_entries(store)
    key = listing_key(finished) if finished else None
    rows = rows_of(store, finished)
    if open_view(store, key) is None:
        save(store, key, rows, finished)
    return rows


def write_json_rows(rows: list, engines: list) -> None:
    """Write ``{"jobs": [...], "engines": [...]}`` in pieces: rows carry their JSON text already."""
    out = sys.stdout
    out.write('{"jobs": [')
    for start in range(0, len(rows), 2000):
        if start:
            out.write(",")
        out.write(",".join(r.to_json() for r in rows[start : start + 2000]))
    out.write(f'], "engines": {json.dumps(engines)}}}\n')

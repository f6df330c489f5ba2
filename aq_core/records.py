"""A rebuildable cache of finished jobs' status records, so ``aq status`` and ``aq insights`` stay fast.

A finished job's record changes only when the job changes state, so each record is kept with the
job's listing ``version`` (see ``Entry``) and recomputed from meta when that differs. The cache is
never the only record of anything: delete it and the next read rebuilds it from the folders and meta.
It is a ``marshal`` file (fast to load; one or more dicts, each after its length) named after the
Python version that wrote it; each job's value is ``(key, summary, extra, tag, json_text)``.
"""

from __future__ import annotations

import contextlib
import json
import marshal
import os
import sys
from pathlib import Path
from typing import Any

from aq_core.filebytes import read_bytes
from aq_core.store import Entry, State, Store

FORMAT = 8  # 6: rows carry after, priority and not_before; 7: the status table's cells kept; 8: in shares
FINISHED = (State.DONE, State.FAILED)
PARALLEL_MIN = 4000  # a rebuild of fewer rows is not worth a second process
_ENCODE = json.JSONEncoder(allow_nan=False).encode  # json.dumps(..., allow_nan=False) makes one per call
try:  # the C encoder that encode() would make for each call, made once (a rebuild encodes every row)
    from json.encoder import c_make_encoder, encode_basestring_ascii

    _C_ENCODE = c_make_encoder(None, None, encode_basestring_ascii, None, ": ", ", ", False, False, False)
    _ENCODE_ROW = lambda row: "".join(_C_ENCODE(row, 0))  # noqa: E731
except (ImportError, TypeError):
    _ENCODE_ROW = _ENCODE


def cache_path(store: Store) -> Path:
    return store.files.root / "cache" / f"records-{FORMAT}-py{sys.version_info[0]}{sys.version_info[1]}.marshal"


def journal_path(store: Store) -> Path:
    return cache_path(store).with_suffix(".journal")


def _entry(entry: Entry, full: dict[str, Any]) -> tuple:
    return ((entry.state.value, entry.version), _ENCODE_ROW(full), tuple(map(full.get, SUMMARY)))


def _computed(entry: Entry, full: dict[str, Any], extra: Any) -> tuple:
    """``_entry`` and the row's ``extra`` (None without one)."""
    key, text, summary = _entry(entry, full)
    return key, text, summary, extra(Row(zip(SUMMARY, summary, strict=True))) if extra is not None else None


def _record(job_id: str, value: tuple) -> bytes:
    data = marshal.dumps((job_id, value))
    return len(data).to_bytes(4, "little") + data


def _append(path: Path, data: bytes) -> None:
    """One ``O_APPEND`` write; losing it (a torn write, a crash) only costs a recomputation."""
    if not data:
        return
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
    with contextlib.suppress(OSError):
        try:  # the folder is there but for the first journalled row: no mkdir for each of the others
            fd = os.open(path, flags, 0o600)
        except FileNotFoundError:
            path.parent.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(path, flags, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


def note_finished(store: Store, job_id: str, state: State, full: dict[str, Any], meta_size: int | None = None) -> None:
    """Journal a job that just reached ``done/`` or ``failed/``, so the next read need not read its meta.

    Every move into a finished state does this (the runner, ``aq cancel``, recovery); a reader folds
    the journal into the cache. A store that keeps no rows itself also gets the row as its meta's
    last line (``row_line``), when ``meta_size`` says which bytes of meta it was computed from.
    """
    keep = getattr(store, "keep_finished_row", None)  # a store that keeps rows itself (PostgreSQL)
    version = keep(job_id, state, _ENCODE(full), list(map(full.get, SUMMARY))) if keep is not None else None
    if version is not None and not cache_path(store).exists():
        return  # kept on the server, and this host prints from there (no rows cache to fold a journal into)
    entry = Entry(job_id, state, 0.0, version) if version is not None else store.entry(job_id, state)
    if entry is None or entry.version is None:
        return
    value = _entry(entry, full)
    _append(journal_path(store), _record(job_id, value))
    if keep is None and meta_size:  # (none: a meta that is gone is not made again for its row)
        from aq_core.row_line import item

        line = item(value[1], value[2], meta_size)
        if line is not None:  # not waiting for the disk: a line lost costs only its computation
            store.append_meta(job_id, line, durable=False)


def _parse(data: bytes) -> tuple[dict[str, tuple], int]:
    """The records in ``data`` (later ones win) and the length of its whole records (a torn tail is dropped)."""
    entries: dict[str, tuple] = {}
    pos = 0
    while pos + 4 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "little")
        chunk = data[pos + 4 : pos + 4 + size]
        if len(chunk) < size:
            break  # a torn last write
        try:
            job_id, value = marshal.loads(chunk)
        except (EOFError, ValueError, TypeError):
            break
        entries[job_id] = value
        pos += 4 + size
    return entries, pos


def _take(path: Path) -> tuple[bytes, Path | None]:
    """Take an append-only file (renamed first: writers append to a new one meanwhile); return its bytes."""
    taken = path.with_name(f".{path.name}.{os.getpid()}.taking")
    try:
        os.rename(path, taken)
    except OSError:
        return b"", None
    try:
        with open(taken, "rb") as fh:
            return fh.read(), taken
    except OSError:
        return b"", taken


def _load(path: Path) -> dict[str, tuple]:
    """The cache: one or more marshalled dicts, each after its length (shares written by forked processes)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()  # one read: load(fh) reads the file in many small pieces
    except OSError:
        return {}
    cache: dict[str, tuple] = {}
    pos, view = 0, memoryview(data)  # slices of a memoryview copy nothing
    try:
        while pos < len(data):
            size = int.from_bytes(data[pos : pos + 8], "little")
            part = marshal.loads(view[pos + 8 : pos + 8 + size]) if pos + 8 + size <= len(data) else None
            if not isinstance(part, dict):
                return {}  # cut short or not a cache: rebuilt
            cache.update(part)
            pos += 8 + size
    except (EOFError, ValueError, TypeError):
        return {}
    return cache


def _save(path: Path, data: dict[str, tuple]) -> None:
    save_frames(path, [marshal.dumps(data)])


def save_frames(path: Path, frames: list[bytes]) -> None:
    """Write the cache from marshalled dicts (written whole, then renamed in)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as fh:
            for frame in frames:
                fh.write(len(frame).to_bytes(8, "little"))
                fh.write(frame)
        os.replace(tmp, path)  # readers see the old file or the new one, never half of one
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


# The typed figures filters, the rollup and the status table read; the rest of a row is in its JSON
# text (``Row.to_json``). Records, not rendered cells: a change of the table's layout is not a cache change.
SUMMARY = (
    "id",
    "state",
    "engine",
    "engines",
    "result",
    "attempts",
    "finished",
    "duration_s",
    "by_engine",
    "lock",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "estimated",
    "lines_added",
    "lines_deleted",
    "error",
    "last_failure",
)


class Row(dict):
    """A status row. A cached one holds only the ``SUMMARY`` fields and its whole JSON text."""

    __slots__ = ("json_text", "extra")  # no per-row __dict__: a hundred thousand of them are made at once

    def to_json(self) -> str:
        text = getattr(self, "json_text", None)
        return text if text is not None else _ENCODE(self)

    def full(self) -> dict[str, Any]:
        """Every field of the row (decoded from the JSON text when the row came from the cache)."""
        text = getattr(self, "json_text", None)
        return json.loads(text) if text is not None else dict(self)


def _fork_parts(store: Store, rows: int) -> int:
    """Into how many processes a computation of ``rows`` rows is split (1: none forked)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    parts = min(cpus, 8, rows // (PARALLEL_MIN // 2))
    # Only a store whose reads are plain files may be forked (a database connection must not be
    # shared), and only a single-threaded process (a fork copies other threads' held locks).
    import threading  # here: `aq status` on a small queue does not pay for its import

    if parts < 2 or not getattr(store, "fork_safe", False) or threading.active_count() > 1 or not hasattr(os, "fork"):
        return 1
    return parts


def fork_share(work: Any) -> tuple[int, Any]:
    """Run ``work()`` in a forked process; its result comes back, marshalled, through ``reap_share``."""
    import tempfile

    out = tempfile.TemporaryFile()  # noqa: SIM115 - closed after the child is reaped
    pid = os.fork()
    if pid == 0:  # the child: compute, write, leave without running the parent's exit handlers
        code = 1
        try:
            out.write(marshal.dumps(work()))
            out.flush()
            code = 0
        finally:
            os._exit(code)
    return pid, out


def reap_share(pid: int, out: Any) -> Any:
    """What a ``fork_share`` process computed; None when it failed (the caller computes that share)."""
    _, status = os.waitpid(pid, 0)
    share = None
    if status == 0:
        out.seek(0)
        with contextlib.suppress(EOFError, ValueError, TypeError):
            share = marshal.loads(out.read())
    out.close()
    return share


def _compute_all(store: Store, misses: list[Entry], compute: Any, extra: Any = None) -> list[tuple]:
    """``_computed`` for each missed entry; a large rebuild is split over forked processes (one per CPU)."""
    parts = _fork_parts(store, len(misses))
    if parts < 2:
        return [_computed(e, compute(e), extra) for e in misses]
    step = -(-len(misses) // parts)
    chunks = [misses[i : i + step] for i in range(0, len(misses), step)]
    children = [
        (*fork_share(lambda chunk=chunk: [_computed(e, compute(e), extra) for e in chunk]), chunk)
        for chunk in chunks[1:]
    ]
    results = [_computed(e, compute(e), extra) for e in chunks[0]]
    for pid, out, chunk in children:
        part = reap_share(pid, out)
        if not isinstance(part, list) or len(part) != len(chunk):
            part = [_computed(e, compute(e), extra) for e in chunk]  # the child failed: do its share here
        results.extend(part)
    return results


def rows_for(store: Store, entries: list[Entry], compute: Any, extra: Any = None, tag: str | None = None) -> list[Row]:
    """Return a status row per entry: cached for finished jobs whose version is unchanged, else computed.

    ``compute(entry)`` builds a row from the job's meta. Only finished jobs are cached: a running or
    waiting job's row changes with every meta line (and with the clock). ``extra(row)``, a pure
    function of a finished row's summary (the status table's cells), is kept beside it under ``tag``
    and set as ``row.extra``; a different tag only re-derives it from the summary, never from meta.
    """
    path = cache_path(store)
    finished = any(e.state in FINISHED for e in entries)
    cache = _load(path) if finished else {}
    data, taken = _take(journal_path(store)) if finished else (b"", None)
    journal, _ = _parse(data)
    for job_id, value in journal.items():
        cache[job_id] = (value[0], value[2], None, None, value[1])
    fresh: dict[str, tuple] = {}
    changed = bool(journal)
    rows: list[Row | None] = []
    misses: list[tuple[int, Entry]] = []
    width = len(SUMMARY)
    # The loop runs once per job (100,000 at a time): plain locals, no enum ``.value`` property.
    values = {state: state.value for state in FINISHED}
    lookup, append, fields = cache.get, rows.append, SUMMARY
    for entry in entries:
        job_id, state, _, version = entry
        value = values.get(state)
        if value is None or version is None:
            append(Row(compute(entry)))
            continue
        key = (value, version)
        hit = lookup(job_id)
        if type(hit) is not tuple or len(hit) != 5 or hit[0] != key or len(hit[1]) != width:
            misses.append((len(rows), entry))
            append(None)
            continue
        row = Row(zip(fields, hit[1], strict=False))  # lengths checked above
        row.json_text = hit[4]
        if extra is not None:
            if hit[3] != tag:
                hit = (key, hit[1], extra(row), tag, hit[4])
                changed = True
            row.extra = hit[2]
        fresh[job_id] = hit
        append(row)
    if misses:
        changed = True
        computed = compute_rows(store, [e for _, e in misses], compute, extra)
        for (index, entry), (key, text, summary, kept) in zip(misses, computed, strict=True):
            row = Row(zip(SUMMARY, summary, strict=True))
            row.json_text = text
            row.extra = kept
            rows[index] = row
            fresh[entry.id] = (key, summary, kept, tag if extra is not None else None, text)
    if changed or len(fresh) != len(cache):
        _save(path, fresh)
    if taken is not None:
        with contextlib.suppress(OSError):
            os.unlink(taken)
    return rows  # type: ignore[return-value]  # every None was filled above


# -- a store that keeps finished rows itself (optional capabilities, see ``store.Store``) -------------


def compute_rows(store: Store, misses: list[Entry], compute: Any, extra: Any = None) -> list[tuple]:
    """The rows of finished jobs the cache lacks: ``(key, json_text, summary, extra)`` per entry, in order.

    ``compute(entry)`` gives a row's fields from the job's meta, ``extra(row)`` its status cells. This
    is the one place rows are computed: a store that keeps finished rows (``finished_rows``) gives
    them first; the rest are computed from meta and given to the store to keep, so the next host
    need not compute them.
    """
    fetch = getattr(store, "finished_rows", None)
    stored = fetch(misses) if fetch is not None else {}
    if not stored:
        out = _compute_all(store, misses, compute, extra)
        _give(store, misses, out)
        return out
    out: list[Any] = [None] * len(misses)
    rest: list[tuple[int, Entry]] = []
    for i, entry in enumerate(misses):
        hit = stored.get(entry.id)
        if hit is not None and len(hit[1]) == len(SUMMARY):
            summary = tuple(hit[1])
            kept = extra(Row(zip(SUMMARY, summary, strict=True))) if extra is not None else None
            out[i] = ((entry.state.value, entry.version), hit[0], summary, kept)
        else:
            rest.append((i, entry))
    if rest:
        done = _compute_all(store, [e for _, e in rest], compute, extra)
        _give(store, [e for _, e in rest], done)
        for (i, _), value in zip(rest, done, strict=True):
            out[i] = value
    return out


def _give(store: Store, entries: list[Entry], computed: list[tuple]) -> None:
    keep = getattr(store, "keep_finished_rows", None)
    rows = [
        (e.id, e.version, text, list(summary))
        for e, (_, text, summary, _) in zip(entries, computed, strict=True)
        if e.state in FINISHED and e.version is not None
    ]
    if keep is not None and rows:
        with contextlib.suppress(Exception):  # a convenience for other hosts, never a reason to fail
            keep(rows)


def rows_quick(store: Store, entries: list[Entry], compute: Any, extra: Any, tag: str) -> list[Row]:
    """Rows of a few finished ``entries`` from the journal (else from meta), with no cache loaded or written.

    For a read that patches the view: the journal stays (a later full read folds it into the cache)."""
    journal = _parse(read_bytes(journal_path(store), empty_on=OSError))[0]
    rows: list[Row | None] = []
    misses: list[tuple[int, Entry]] = []
    for entry in entries:
        hit = journal.get(entry.id)
        if (
            entry.version is None
            or hit is None
            or hit[0] != (entry.state.value, entry.version)
            or len(hit[2]) != len(SUMMARY)
        ):
            misses.append((len(rows), entry))
            rows.append(None)
            continue
        row = Row(zip(SUMMARY, hit[2], strict=True))
        row.json_text = hit[1]
        row.extra = extra(row)
        rows.append(row)
    computed = compute_rows(store, [e for _, e in misses], compute, extra) if misses else []
    for (index, _), (_, text, summary, kept) in zip(misses, computed, strict=True):
        row = Row(zip(SUMMARY, summary, strict=True))
        row.json_text, row.extra = text, kept
        rows[index] = row
    return rows  # type: ignore[return-value]  # every None was filled above


def carry_over(source: Store, target: Store, compute: Any) -> int:
    """After every job was copied to ``target`` (``aq store migrate``): fill its rows cache, so the first
    read there is warm. ``source``'s cache is only read (the source is left as it was); a row it lacks
    or holds stale is computed from the source's meta. Returns how many rows were written."""
    cached = _load(cache_path(source))
    for job_id, value in _parse(read_bytes(journal_path(source), empty_on=OSError))[0].items():
        cached[job_id] = (value[0], value[2], None, None, value[1])
    moved = {e.id: e for state in FINISHED for e in target.scan(state)}
    rows, misses = _load(cache_path(target)), []
    width = len(SUMMARY)
    for entry in (e for state in FINISHED for e in source.scan(state)):
        there = moved.get(entry.id)
        if there is None or there.state is not entry.state or there.version is None:
            continue
        key, new_key = (entry.state.value, entry.version), (there.state.value, there.version)
        hit = cached.get(entry.id)
        if type(hit) is tuple and len(hit) == 5 and hit[0] == key and len(hit[1]) == width:
            rows[entry.id] = (new_key, *hit[1:])
        else:
            misses.append((entry, new_key))
    for (entry, new_key), value in zip(misses, _compute_all(source, [e for e, _ in misses], compute), strict=True):
        rows[entry.id] = (new_key, value[2], None, None, value[1])
    _save(cache_path(target), rows)
    keep = getattr(target, "keep_finished_rows", None)  # for every host's first read, not only this one's
    if keep is not None:
        with contextlib.suppress(Exception):
            keep(
                [(i, v[0][1], v[4], list(v[1])) for i, v in rows.items() if i in moved and v[0][1] == moved[i].version]
            )
    return len(moved)

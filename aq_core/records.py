"""A rebuildable cache of finished jobs' status records, so ``aq status`` and ``aq insights`` stay fast.

A finished job's record changes only when the job changes state, so each record is kept with the
job's listing ``version`` (see ``Entry``) and recomputed from meta when that differs. The cache is
never the only record of anything: delete it and the next read rebuilds it from the folders and meta.
It is a ``marshal`` file (fast to load) named after the Python version that wrote it.
"""

from __future__ import annotations

import contextlib
import json
import marshal
import os
import sys
from pathlib import Path
from typing import Any

from aq_core.store import Entry, State, Store

FORMAT = 5
FINISHED = (State.DONE, State.FAILED)


def cache_path(store: Store) -> Path:
    return store.files.root / "cache" / f"records-{FORMAT}-py{sys.version_info[0]}{sys.version_info[1]}.marshal"


def journal_path(store: Store) -> Path:
    return cache_path(store).with_suffix(".journal")


def _entry(entry: Entry, full: dict[str, Any]) -> tuple:
    key = (entry.state.value, entry.version)
    return (key, json.dumps(full, allow_nan=False), tuple(full.get(f) for f in SUMMARY))


def note_finished(store: Store, job_id: str, state: State, full: dict[str, Any]) -> None:
    """Journal a job the runner just finished, so the next ``aq status`` need not read its meta.

    One ``O_APPEND`` write per job; a reader folds the journal into the cache. Losing it (a torn
    write, a crash) only means the row is computed from meta again.
    """
    entry = store.entry(job_id, state)
    if entry is None or entry.version is None:
        return
    data = marshal.dumps((job_id, _entry(entry, full)))
    path = journal_path(store)
    with contextlib.suppress(OSError):
        path.parent.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, len(data).to_bytes(4, "little") + data)
        finally:
            os.close(fd)


def _read_journal(store: Store) -> tuple[dict[str, tuple], Path | None]:
    """Take the journal (renamed first: runners append to a new one meanwhile) and return its entries."""
    path = journal_path(store)
    taken = path.with_name(f".{path.name}.{os.getpid()}.taking")
    try:
        os.rename(path, taken)
    except OSError:
        return {}, None
    entries: dict[str, tuple] = {}
    try:
        with open(taken, "rb") as fh:
            data = fh.read()
    except OSError:
        return {}, taken
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
    return entries, taken


def _load(path: Path) -> dict[str, tuple]:
    try:
        with open(path, "rb") as fh:
            data = marshal.loads(fh.read())  # one read: load(fh) reads the file in many small pieces
    except (OSError, EOFError, ValueError, TypeError):
        return {}
    return data if isinstance(data, dict) else {}


def _save(path: Path, data: dict[str, tuple]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as fh:
            marshal.dump(data, fh)
        os.replace(tmp, path)  # readers see the old cache or the new one, never half of one
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


# The typed figures filters, the rollup and the status table read; the rest of a row is in its JSON
# text (``Row.full``). Records, not rendered cells: a change of the table's layout is not a cache change.
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

    __slots__ = ("json_text",)  # no per-row __dict__: a hundred thousand of them are made at once

    def __init__(self, *args: Any, json_text: str | None = None) -> None:
        super().__init__(*args)
        self.json_text = json_text

    def to_json(self) -> str:
        return self.json_text if self.json_text is not None else json.dumps(self, allow_nan=False)

    def full(self) -> dict[str, Any]:
        """Every field of the row (decoded from the JSON text when the row came from the cache)."""
        return json.loads(self.json_text) if self.json_text is not None else dict(self)


def rows_for(store: Store, entries: list[Entry], compute: Any) -> list[Row]:
    """Return a status row per entry: cached for finished jobs whose version is unchanged, else computed.

    ``compute(entry)`` builds a row from the job's meta. Only finished jobs are cached: a running or
    waiting job's row changes with every meta line (and with the clock).
    """
    path = cache_path(store)
    finished = any(e.state in FINISHED for e in entries)
    cache = _load(path) if finished else {}
    journal, taken = _read_journal(store) if finished else ({}, None)
    cache.update(journal)
    fresh: dict[str, tuple] = {}
    changed = bool(journal)
    rows = []
    for entry in entries:
        if entry.state not in FINISHED or entry.version is None:
            rows.append(Row(compute(entry)))
            continue
        key = (entry.state.value, entry.version)
        hit = cache.get(entry.id)
        if hit is None or hit[0] != key or len(hit[2]) != len(SUMMARY):
            hit = _entry(entry, compute(entry))
            changed = True
        fresh[entry.id] = hit
        rows.append(Row(zip(SUMMARY, hit[2], strict=False), json_text=hit[1]))  # lengths checked above
    if changed or len(fresh) != len(cache):
        _save(path, fresh)
    if taken is not None:
        with contextlib.suppress(OSError):
            os.unlink(taken)
    return rows

"""The forked processes of the cold rebuild (``view_build.rebuild``), and the rows cache they write.

Each child computes its share of the rows, tells the parent its table's column widths and waits for
the widths every share agreed on (the largest of each column), so it lays out its table lines at the
table's widths while the parent lays out its own: no share is laid out twice (a share of done jobs
only would otherwise have a narrower RESULT column than one with failed jobs). It then writes, to a
file in memory (``memfd``), its part of the rows cache as a frame of the cache file (its length, then
its bytes), then the share's big parts as they are and the rest of it marshalled; the parent maps
that file and writes the frame to the cache file and the big parts to the view from the mapping
(never read, unmarshalled or copied in the parent). A child that dies, or a parent
that never answers, costs time, never a wrong table: a share laid out at other widths is laid out
again by ``view_build._table``, and a failed child's share is computed by the parent.
"""

from __future__ import annotations

import contextlib
import marshal
import os
from pathlib import Path
from typing import Any


def _send(fd: int, value: Any) -> None:
    data = marshal.dumps(value, 2)
    view = memoryview(len(data).to_bytes(4, "little") + data)
    with contextlib.suppress(OSError):  # a reader gone (BrokenPipeError): it lays out at its own widths
        while view:
            view = view[os.write(fd, view) :]


def _receive(fd: int) -> Any:
    """One ``_send`` message from ``fd``; None when the writer is gone first."""
    data = b""
    with contextlib.suppress(OSError):
        while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "little"):
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            data += chunk
        with contextlib.suppress(EOFError, ValueError, TypeError):
            return marshal.loads(data[4:])
    return None


RAW = ("table", "cells", "status", "insights")  # a share's big parts (bytes, tens of MB at 100,000 jobs)


def _scratch() -> Any:
    """A file for a child's share: in memory where the system can (``memfd``), else a temporary file.
    On a disk's file system the child's writes of its share (about 150 MB at 100,000 jobs over two
    processes) cost it two to five times the CPU, on the parent's path: the parent waits for them."""
    memfd = getattr(os, "memfd_create", None)
    if memfd is not None:
        with contextlib.suppress(OSError):
            return open(memfd("aq-share"), "w+b")  # noqa: SIM115 - closed by the caller
    import tempfile

    return tempfile.TemporaryFile()  # noqa: SIM115 - closed by the caller


class Child:
    """A forked process computing ``work(agree)``: a share, its table's widths agreed through ``agree``."""

    def __init__(self, work: Any) -> None:
        self.out = _scratch()  # closed by the caller after ``reap``
        up, self._up = os.pipe()  # the child's widths to the parent
        self._down, down = os.pipe()  # the agreed widths back
        self.pid = os.fork()
        if self.pid == 0:  # the child: compute, write, leave without running the parent's exit handlers
            code = 1
            try:
                os.close(up)
                os.close(down)
                write_share(self.out, work(self._agree))
                code = 0
            finally:
                os._exit(code)
        os.close(self._up)
        os.close(self._down)
        self._up, self._down = up, down  # the parent's ends

    def _agree(self, widths: list[int] | None) -> Any:
        """In the child: send its widths, wait for the agreed ones (None: the parent is gone)."""
        _send(self._up, widths)
        os.close(self._up)
        return _receive(self._down)

    def hear(self) -> Any:
        """In the parent: the child's widths (None: none, or it is gone)."""
        return _receive(self._up)

    def tell(self, widths: list[int]) -> None:
        _send(self._down, widths)

    def reap(self, rows: int) -> dict[str, Any] | None:
        """The share the child computed (its ``frame`` of the rows cache a view of the mapped file, as
        ``CacheFile.put`` takes it); None when it failed."""
        for fd in (self._up, self._down):
            with contextlib.suppress(OSError):
                os.close(fd)
        _, status = os.waitpid(self.pid, 0)
        if status != 0:
            return None
        return shared(self.out.fileno(), rows)


def write_share(out: Any, share: dict[str, Any]) -> None:
    """Write a share to the file ``out``: its rows cache frame (length, bytes), its big parts as they
    are, the rest marshalled, and that rest's length (``shared`` reads it back)."""
    frame = share.pop("cache")
    share["frame"] = at = 8 + len(frame)
    out.write(len(frame).to_bytes(8, "little"))
    out.write(frame)
    share["raw"] = raw = {}
    for name in RAW:  # written as they are, not marshalled: the parent maps them, no copy
        data = share.pop(name)
        raw[name] = (at, len(data))
        at += len(data)
        out.write(data)
    rest = marshal.dumps(share, 2)
    out.write(rest)
    out.write(len(rest).to_bytes(8, "little"))
    out.flush()


def shared(fd: int, rows: int) -> dict[str, Any] | None:
    """The share a child wrote to the file ``fd`` (frame, big parts, the rest marshalled, its length),
    its big parts views of the mapped file; None when it is not one of ``rows`` rows (cut short, torn)."""
    import mmap

    with contextlib.suppress(OSError, EOFError, ValueError, TypeError, KeyError, AttributeError):
        mapped = memoryview(mmap.mmap(fd, 0, access=mmap.ACCESS_READ))
        end = len(mapped) - 8
        size = int.from_bytes(mapped[end:], "little")
        if not 0 <= size <= end:
            return None
        share = marshal.loads(mapped[end - size : end])
        if not isinstance(share, dict) or share.get("n") != rows:
            return None
        at = share["frame"]  # the rows cache's frame: its length, then its bytes
        if not 8 <= at <= end or int.from_bytes(mapped[:8], "little") != at - 8:
            return None
        share["frame"] = mapped[:at]
        for name, (at, size) in share.pop("raw").items():  # the big parts: views of the mapped file
            if not 0 <= at <= at + size <= end:
                return None
            share[name] = mapped[at : at + size]
        return share
    return None


def agree_with(children: list[Child]) -> Any:
    """The parent's ``agree``: every share's widths heard, the largest of each column told to all."""

    def agree(mine: list[int] | None) -> list[int]:
        known = [widths for widths in [mine, *(child.hear() for child in children)] if isinstance(widths, list)]
        agreed = [max(column) for column in zip(*known, strict=True)] if known else []
        for child in children:
            child.tell(agreed)
        return agreed

    return agree


class CacheFile:
    """The rows cache written as frames (``records._load`` reads them in any order), renamed in whole."""

    def __init__(self, path: Path) -> None:
        self.path, self.tmp, self.fd = path, path.with_name(f".{path.name}.{os.getpid()}.tmp"), -1
        with contextlib.suppress(OSError):
            path.parent.mkdir(mode=0o700, exist_ok=True)
            self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)

    def add(self, frame: bytes) -> None:
        self._write(len(frame).to_bytes(8, "little"))
        self._write(frame)

    def put(self, framed: Any) -> None:
        """Append a frame already led by its length (a child's, from its mapped file)."""
        self._write(framed)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view and self.fd >= 0:
                view = view[os.write(self.fd, view) :]
        except OSError:
            self.abandon()

    def abandon(self) -> None:
        """No cache written (a full disk): the next read computes the rows again."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)

    def close(self) -> None:
        if self.fd < 0:
            return
        try:
            os.close(self.fd)
            self.fd = -1
            os.replace(self.tmp, self.path)  # readers see the old file or the new one, never half of one
        except OSError:
            self.abandon()

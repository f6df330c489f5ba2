"""The wake-up channel of a filesystem queue: idle runners hear ``aq add`` at once.

Each runner owns a FIFO, ``wake/<pid>`` in the queue root, and a thread that reads it: a byte in it
wakes the runner's loop. ``notify`` (``aq add``, ``aq retry``, ``aq resume``: the store's ``poke``)
writes one byte, non-blocking, into every FIFO there. It never blocks and never fails: a FIFO nobody
reads (its runner was killed) refuses the open (``ENXIO``), a full one already holds a wake-up, and
anything that is not a FIFO is left alone. The runner's ``stat`` of ``inbox/`` stays the fallback, so
a lost byte costs at most one poll interval.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

FOLDER = "wake"


def notify(root: Path) -> int:
    """Wake every runner listening on ``root``; return how many FIFOs took the byte."""
    folder = os.path.join(root, FOLDER)
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    woken = 0
    for name in names:
        try:
            fd = os.open(os.path.join(folder, name), os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:  # ENXIO: no reader (a killed runner's FIFO); ELOOP, ENOENT, EACCES: not ours
            continue
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode):  # never write into a file planted there
                os.write(fd, b"!")
                woken += 1
        except OSError as exc:
            if exc.errno == errno.EAGAIN:  # full: the runner has a wake-up waiting already
                woken += 1
        finally:
            os.close(fd)
    return woken


class Listener:
    """A runner's FIFO and the thread that turns each byte in it into ``on_wake()``."""

    def __init__(self, root: Path, on_wake: Callable[[], None]) -> None:
        import threading  # here: `aq add` only notifies

        folder = Path(root) / FOLDER
        folder.mkdir(mode=0o700, exist_ok=True)
        _remove_stale(folder)
        self.path = folder / str(os.getpid())
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # a FIFO left by an earlier process with this pid
        os.mkfifo(self.path, 0o600)
        # Read and write: the FIFO always has a writer (ours), so a read blocks instead of seeing EOF.
        self.fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        self.on_wake = on_wake
        self.closed = False
        self.thread = threading.Thread(target=self._read, name="aq-wake", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.closed:
            try:
                os.read(self.fd, 512)
            except OSError:
                return
            if not self.closed:
                self.on_wake()

    def ring(self) -> None:
        """Wake the loop from a signal handler: one ``write``, no lock taken."""
        with contextlib.suppress(OSError):
            os.write(self.fd, b"!")

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        self.ring()  # the reading thread returns from its read and sees ``closed``
        self.thread.join(timeout=1.0)
        with contextlib.suppress(OSError):
            os.close(self.fd)


def listen(root: Path, on_wake: Callable[[], None]) -> Listener | None:
    """Open this runner's channel; None when it cannot be made (the ``stat`` poll still works)."""
    try:
        return Listener(root, on_wake)
    except OSError:
        return None


def _remove_stale(folder: Path) -> None:
    """Remove the FIFOs of runners that are gone (a runner killed with SIGKILL leaves its FIFO)."""
    for name in os.listdir(folder):
        if not name.isdigit():
            continue
        try:
            os.kill(int(name), 0)
            continue  # that process exists: maybe a runner
        except ProcessLookupError:
            pass
        except OSError:
            continue
        with contextlib.suppress(OSError):
            os.unlink(folder / name)

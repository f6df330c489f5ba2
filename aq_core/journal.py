"""aq's own lines about jobs: printed by the runner and kept in the job's log under ``logs/``."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from typing import TextIO

from aq_core.store import Store


class Journal:
    """Writes one line per event to the runner's output and to ``logs/<id>.aq.log``.

    Never pass the prompt (or any job text) here: these lines are shown to whoever runs ``aq``.
    """

    def __init__(self, store: Store, out: TextIO | None = None) -> None:
        self.store = store
        self.out = out if out is not None else sys.stdout
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}  # job id -> its log, open while the runner runs an attempt of it

    def say(self, job_id: str | None, message: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        line = f"aq: {stamp} {job_id}: {message}" if job_id else f"aq: {stamp} {message}"
        with self._lock:
            with contextlib.suppress(BrokenPipeError, ValueError):
                self.out.write(line + "\n")  # one write, not print's two (the line, then its end)
                self.out.flush()
            held = self._held.get(job_id) if job_id else None
            if held is not None:  # written under the lock: ``release`` cannot close it meanwhile
                with contextlib.suppress(OSError):
                    os.write(held, (line + "\n").encode("utf-8", errors="replace"))
                return
        if job_id:
            try:
                fd = self._open(job_id)
                try:
                    os.write(fd, (line + "\n").encode("utf-8", errors="replace"))
                finally:
                    os.close(fd)
            except OSError:
                pass

    def hold(self, job_id: str) -> None:
        """Keep the job's log open until ``release``: an attempt says a few lines, and an open and a
        close for each cost a short job more than the line does."""
        try:
            # One open that creates: an attempt holds the log of a job it has just claimed, and most
            # such jobs have none yet (``_open`` would try a plain open first, in vain).
            fd = self.store.files.open_log(self.store.files.aq_log_path(job_id))
        except OSError:
            return  # each line opens it then, as without a hold
        with self._lock:
            old = self._held.pop(job_id, None)
            self._held[job_id] = fd
        if old is not None:
            os.close(old)

    def holds(self, job_id: str) -> bool:
        """Whether the job's log is held open (it is then a regular file, opened without following a link)."""
        return job_id in self._held

    def release(self, job_id: str) -> None:
        with self._lock:
            fd = self._held.pop(job_id, None)
        if fd is not None:
            os.close(fd)

    def _open(self, job_id: str) -> int:
        path = self.store.files.aq_log_path(job_id)
        try:
            # An open that may create takes the folder's lock for writing: on the job's later lines
            # the file is there, and a plain open lets the runner's workers write to logs/ at once.
            return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
        except FileNotFoundError:
            return self.store.files.open_log(path)

    def for_job(self, job_id: str):
        """Return a one-argument ``log`` callable for plugins (the checkpoint hook's ``log``)."""
        return lambda message: self.say(job_id, str(message))

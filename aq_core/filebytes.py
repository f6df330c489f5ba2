"""Reading a whole file's bytes: the one reader of the modules that read small files on a job's path.

Plain system calls, no file object: a buffered file object makes five more (two ``fstat``, two
``lseek``, an ``ioctl``), and a checkpoint reads a few small files a job.
"""

from __future__ import annotations

import os

_CHUNK = 65536
Errors = type[OSError] | tuple[type[OSError], ...]


def read_bytes(path: str | os.PathLike[str], *, follow: bool = True, empty_on: Errors = ()) -> bytes:
    """``path``'s bytes. ``follow=False``: a symbolic link there is an error (``ELOOP``), never
    read through; ``empty_on``: the errors that read as no bytes (``FileNotFoundError`` for a file
    that may not be there yet, ``OSError`` for any), where every other one is raised."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW))
    except empty_on:
        return b""
    try:
        data = os.read(fd, _CHUNK)
        if len(data) < _CHUNK:  # a regular file reads short only at its end: most files are one read
            return data
        parts = [data]
        rest = max(_CHUNK, os.fstat(fd).st_size - len(data) + 1)  # one fstat: the rest in one read, if it stays
        while chunk := os.read(fd, rest):
            parts.append(chunk)
        return b"".join(parts)
    except empty_on:  # a directory, say, opens and fails at its first read
        return b""
    finally:
        os.close(fd)

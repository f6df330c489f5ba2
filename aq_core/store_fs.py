"""The filesystem store, the embedded default: a queue root on this host's disk.

State is a folder and a transition is one atomic ``rename``: of several runners that try to claim
the same job, exactly one rename succeeds. Meta is append-only. Everything is private to the user
(root 0700, files 0600) and nothing is written through a symlink. Locks are ``flock``s, so a lock
is free the moment its holder dies; a runner's liveness is its pid and start time.
"""

from __future__ import annotations

import contextlib
import errno
import os
from _thread import _local  # threading.local itself: `aq add` must not import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from aq_core.errors import AqError, UsageError
from aq_core.meta import Meta, encode_lines
from aq_core.store import (
    STATES,
    Coordination,
    EngineRecords,
    Entry,
    LocalFiles,
    Lock,
    State,
    Store,
    host_id,
    read_regular_file,
    write_file,
)

TYPE_CHECKING = False  # typing costs `aq add` milliseconds: only type checkers read these
if TYPE_CHECKING:
    from typing import Any

JOB_SUFFIX = ".md"


class FsStore(Store):
    """A queue root on the local filesystem: it is also the local directory (``files.root``)."""

    FOLDERS = (*STATES, "meta", "logs", "tmp", "locks", "runners", "engines")
    fork_safe = True  # reads are plain files: a forked process may read alongside (records' rebuild)

    def __init__(self, root: Path | str, create: bool = True) -> None:
        self.files = LocalFiles(root, self.FOLDERS)
        self.coord = FsCoordination(self)
        self.engines = FsEngineRecords(self.files)
        self._meta_dir = str(self.files.root / "meta")
        if create:
            self.files.ensure()

    @property
    def root(self) -> Path:
        return self.files.root

    def __repr__(self) -> str:
        return f"FsStore({str(self.root)!r})"

    def describe(self) -> str:
        return str(self.root)

    def path(self, job_id: str, state: State) -> Path:
        return self.root / state.value / (job_id + JOB_SUFFIX)

    def meta_path(self, job_id: str) -> Path:
        return self.root / "meta" / f"{job_id}.meta"

    # The runner's per-job path joins strings: a ``Path`` costs microseconds to build, many per job.
    def _file(self, job_id: str, state: State) -> str:
        return f"{self.files.root}/{state.value}/{job_id}{JOB_SUFFIX}"

    def _meta_file(self, job_id: str) -> str:
        return f"{self._meta_dir}/{job_id}.meta"

    # -- transitions --------------------------------------------------------------------------

    def add(self, job_id: str, data: bytes, meta: Mapping[str, Any]) -> None:
        existing = self.locate(job_id)
        if existing is not None:
            raise UsageError(f"job {job_id!r} already exists (in {existing.value}/): rename the file to queue it again")
        if os.path.lexists(self.meta_path(job_id)):
            raise UsageError(f"job {job_id!r} already has a record in meta/: rename the file to queue it again")
        tmp = self.files.tmp_path(f"{job_id}.{os.getpid()}.{os.urandom(4).hex()}")
        write_file(tmp, data)
        try:
            self.append_meta(job_id, meta)
            # link, not rename: never replaces a job file another `aq add` just created.
            os.link(tmp, self.path(job_id, State.INBOX))
        except FileExistsError:
            raise UsageError(f"job {job_id!r} already exists (in inbox/)") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        sync_dir(self.root / State.INBOX.value)

    def claim(self, job_id: str) -> bool:
        return self.move(job_id, State.INBOX, State.BUILDING)

    def move(self, job_id: str, src: State, dst: State) -> bool:
        """Rename the job file; durable at once except out of ``building/`` (see ``docs/performance.md``):
        such a move always follows its ``decision`` line, written durably, and a rename the disk lost
        leaves the job in ``building/`` with that decision, which recovery finishes (``transitions.replay``)."""
        target = self._file(job_id, dst)
        if os.path.lexists(target):
            if not os.path.lexists(self._file(job_id, src)):
                return False  # another runner moved it there first
            # rename() would silently replace it; a job is never in two folders.
            raise AqError(f"job {job_id!r}: cannot move to {dst.value}/, a file of that name is already there")
        try:
            os.rename(self._file(job_id, src), target)
        except FileNotFoundError:
            return False
        if src is not State.BUILDING:
            sync_dir(f"{self.files.root}/{dst.value}")
        return True

    def append_meta(self, job_id: str, items: Mapping[str, Any], durable: bool = True) -> None:
        append_lines(self._meta_file(job_id), encode_lines(items), durable)

    def read_meta(self, job_id: str) -> Meta:
        # A plain string path: a rebuild of the rows cache reads 100,000 of these, and pathlib's
        # joins cost as much as the read.
        return read_meta_file(f"{self._meta_dir}/{job_id}.meta")

    def read_meta_bytes(self, job_id: str) -> bytes:
        """The job's meta file as it is (b"" when there is none): a rebuild of the rows cache looks
        at its last line before parsing any (``row_line``)."""
        return read_file_bytes(f"{self._meta_dir}/{job_id}.meta")

    def list(self, state: State | None = None) -> list[Entry]:
        entries = self.scan(state)
        entries.sort(key=lambda e: (e.queued, e.id))
        return entries

    def entry(self, job_id: str, state: State) -> Entry | None:
        try:
            info = os.lstat(self._file(job_id, state))
        except OSError:
            return None
        return Entry(job_id, state, info.st_mtime, (info.st_ctime_ns, info.st_size))

    def names(self, state: State) -> list[str]:
        """The ids in ``state``, in no order, without a ``stat`` each (the runner's quick look)."""
        try:
            found = os.listdir(self.root / state.value)
        except FileNotFoundError:
            return []
        return [n[: -len(JOB_SUFFIX)] for n in found if n.endswith(JOB_SUFFIX) and not n.startswith(".")]

    def scan(self, state: State | None = None) -> list[Entry]:
        entries: list[Entry] = []
        make, cut = tuple.__new__, -len(JOB_SUFFIX)  # Entry's own __new__ is a Python call: this loop runs per job
        for st in [state] if state else STATES:
            folder = self.root / st.value
            try:
                scan = os.scandir(folder)
            except FileNotFoundError:
                continue
            with scan:
                for item in scan:
                    name = item.name
                    if not name.endswith(JOB_SUFFIX) or name.startswith("."):
                        continue
                    try:
                        info = item.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    # A rename changes ctime, not mtime: mtime keeps the queue order, ctime the version.
                    entries.append(make(Entry, (name[:cut], st, info.st_mtime, (info.st_ctime_ns, info.st_size))))
        return entries

    def read_job(self, job_id: str, state: State) -> bytes:
        path = self.path(job_id, state)
        if os.path.islink(path):
            raise ValueError("the job file is a symlink (aq reads only regular files in its queue)")
        return read_regular_file(path)

    def locate(self, job_id: str) -> State | None:
        for st in STATES:
            if os.path.lexists(self._file(job_id, st)):
                return st
        return None


class _FileLock(Lock):
    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


class FsCoordination(Coordination):
    """``flock`` locks in ``locks/``; ownership is a pid and its start time on this host."""

    def __init__(self, store: FsStore) -> None:
        super().__init__(store.files)
        self.store = store

    def try_lock(self, name: str) -> Lock | None:
        import fcntl

        fd = self._open_lock(name)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            raise
        return _FileLock(fd)

    def _open_lock(self, name: str) -> int:
        """The file a lock is an ``flock`` on. A job's lock (``job:<id>``) is its meta file: it is
        there from ``aq add`` on and never replaced (meta is append-only), so taking it creates no
        file; on this machine's filesystem a file's creation costs more of a short job's runner
        time than anything else it does. Any other name has a file of its own in ``locks/``."""
        if name.startswith("job:"):
            with contextlib.suppress(OSError):  # a symlink planted there: the job's file in locks/
                # Created for a job dropped into inbox/ without ``aq add``: its claim writes it anyway.
                # Opened for writing (never written through) as a lock file is: NFS emulates ``flock``
                # with ``fcntl`` locks, and an exclusive one needs a file open for writing.
                return os.open(self.store._meta_file(name[4:]), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        import hashlib

        digest = hashlib.sha256(name.encode()).hexdigest()[:32]
        path = self.files.root / "locks" / f"{digest}.lock"
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            os.unlink(path)  # a planted symlink in aq's own scratch folder: never write through it
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)

    def claim_meta(self) -> dict[str, Any]:
        from aq_core.procs import start_time

        return {"pid": os.getpid(), "pidstart": start_time(os.getpid()), "host": host_id()}

    def owner_alive(self, job_id: str, meta: Meta) -> bool:
        from aq_core.procs import alive

        if meta.get("host", host_id()) != host_id():
            return True  # a pid on another machine means nothing here: never take its job
        return alive(meta.integer("pid"), meta.number("pidstart"))

    def meta_version(self, job_id: str) -> object:
        try:
            return os.stat(self.store._meta_file(job_id)).st_size
        except OSError:
            return -1

    def job_version(self, job_id: str, state: State) -> object | None:
        try:
            st = os.lstat(self.store._file(job_id, state))
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def inbox_token(self) -> object:
        try:
            return os.stat(self.files.root / State.INBOX.value).st_mtime_ns
        except FileNotFoundError:
            return 0

    def poke(self) -> None:
        from aq_core import wake

        wake.notify(self.files.root)  # runners listening hear it at once
        with contextlib.suppress(OSError):
            os.utime(self.files.root / State.INBOX.value)  # the others see it at their next poll

    def listen(self, on_wake: Callable[[], None]) -> Any:
        from aq_core import wake

        return wake.listen(self.files.root, on_wake)


class FsEngineRecords(EngineRecords):
    """One append-only file per engine in ``engines/``."""

    def __init__(self, files: LocalFiles) -> None:
        self.files = files
        self._ahead = _local()  # .names: the listing ``prefetched`` made, this thread only

    @contextlib.contextmanager
    def prefetched(self) -> Iterator[None]:
        """Within the block, this thread's ``names`` is the listing made on entry: a runner's pick asks
        three questions of every engine's record, and listing ``engines/`` once is enough (an engine
        whose first record is written meanwhile is seen at the next pick, as it would be a moment later)."""
        self._ahead.names = self._list()
        try:
            yield
        finally:
            self._ahead.names = None

    def _path(self, engine: str) -> Path:
        if not engine or "/" in engine or engine.startswith("."):
            raise AqError(f"bad engine name {engine!r}")
        return self.files.root / "engines" / f"{engine}.meta"

    def append(self, engine: str, items: Mapping[str, Any]) -> None:
        append_lines(self._path(engine), encode_lines(items))

    def read(self, engine: str) -> Meta:
        return read_meta_file(self._path(engine))

    def names(self) -> list[str]:
        ahead = getattr(self._ahead, "names", None)
        return list(ahead) if ahead is not None else self._list()

    def _list(self) -> list[str]:
        folder = self.files.root / "engines"
        try:
            return sorted(n[: -len(".meta")] for n in os.listdir(folder) if n.endswith(".meta"))
        except FileNotFoundError:
            return []


def append_lines(path: Path | str, data: bytes, durable: bool = True) -> None:
    """Append whole ``key=value`` lines to a meta file in one write; ``durable``: fsync'd before returning.

    Without ``durable`` the lines are seen by every process at once (a killed runner loses nothing)
    and reach the disk with the file's next fsync, which covers every earlier byte of it."""
    if not data:
        return
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data  # after a torn last line (power loss): start on a line of our own
        view = memoryview(data)
        while view:  # one write for whole lines; loop only on a short write
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)


def read_meta_file(path: Path | str) -> Meta:
    return Meta.from_bytes(read_file_bytes(path))


def read_file_bytes(path: Path | str) -> bytes:
    """A meta file's bytes (b"" when it cannot be opened; a symlink is not followed)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return b""
    try:
        # Plain reads, no buffered file object to set up per meta. A read of a regular file returns
        # less than asked only at its end: almost every meta is one read.
        data = chunk = os.read(fd, _READ)
        while len(chunk) == _READ:
            chunk = os.read(fd, _READ)
            data += chunk
    finally:
        os.close(fd)
    return data


_READ = 65536


def sync_dir(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

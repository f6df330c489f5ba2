"""The queue store: the only way a job's state and meta change (filesystem implementation).

State is a folder and a transition is one atomic ``rename``: of several runners that try to claim
the same job, exactly one rename succeeds. Meta is append-only. Everything is private to the user
(root 0700, files 0600) and nothing is written through a symlink.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple

from aq_core.errors import AqError, UsageError
from aq_core.meta import Meta, encode_lines

JOB_SUFFIX = ".md"


class State(StrEnum):
    INBOX = "inbox"
    BUILDING = "building"
    DONE = "done"
    FAILED = "failed"


STATES = tuple(State)


class Entry(NamedTuple):
    """A job file as listed: its id, state and when it was queued (for oldest-first order).

    ``version`` changes whenever the job changes state or is rewritten (None: the store cannot say);
    caches of finished jobs' records are keyed by it.
    """

    id: str
    state: State
    queued: float
    version: object = None


class Lock(ABC):
    """A held lock; released by ``release()`` or when the holding process dies."""

    @abstractmethod
    def release(self) -> None: ...


class Store(ABC):
    """Every state transition of the queue. A database store implements the same methods."""

    @abstractmethod
    def add(self, job_id: str, data: bytes, meta: Mapping[str, Any]) -> None:
        """Queue a new job in ``inbox``; raise ``UsageError`` if the id exists in any state."""

    @abstractmethod
    def claim(self, job_id: str) -> bool:
        """Move a job from ``inbox`` to ``building``; False when another runner got it first."""

    @abstractmethod
    def move(self, job_id: str, src: State, dst: State) -> bool:
        """Move a job between states; False when it was not in ``src`` (someone else moved it)."""

    @abstractmethod
    def append_meta(self, job_id: str, items: Mapping[str, Any]) -> None:
        """Append ``key=value`` lines to the job's meta, durably, in one write."""

    @abstractmethod
    def read_meta(self, job_id: str) -> Meta:
        """Return the job's meta (empty when it has none)."""

    @abstractmethod
    def list(self, state: State | None = None) -> list[Entry]:
        """Return the jobs in ``state`` (all states when None), oldest first."""

    def scan(self, state: State | None = None) -> list[Entry]:
        """Like ``list`` but in no particular order (cheaper, for callers that sort their own way)."""
        return self.list(state)

    def entry(self, job_id: str, state: State) -> Entry | None:
        """The listing entry of one job in ``state`` (None when it is not there)."""
        return next((e for e in self.scan(state) if e.id == job_id), None)

    @abstractmethod
    def read_job(self, job_id: str, state: State) -> bytes:
        """Return the job file's bytes; raise ``FileNotFoundError`` when it is not in ``state``."""

    @abstractmethod
    def locate(self, job_id: str) -> State | None:
        """Return the state a job is in, or None when there is no such job."""

    @abstractmethod
    def try_lock(self, name: str) -> Lock | None:
        """Take the named lock without waiting; None when another holder has it.

        A lock is released by ``Lock.release()`` and, always, when its holder dies.
        """

    @abstractmethod
    def append_engine_meta(self, engine: str, items: Mapping[str, Any]) -> None:
        """Append to an engine's record (pauses, limit streaks): append-only, like a job's meta."""

    @abstractmethod
    def read_engine_meta(self, engine: str) -> Meta:
        """Return an engine's record (empty when it has none)."""

    @abstractmethod
    def engine_names_with_meta(self) -> list[str]:
        """Return the engines that have a record."""

    @abstractmethod
    def owner_alive(self, job_id: str, meta: Meta) -> bool:
        """True when the runner that claimed ``job_id`` (per its meta) may still be running it.

        Recovery treats a job in ``building`` whose lock it can take and whose owner is not alive
        as an orphan. Never answer False for a runner that may be alive.
        """

    @abstractmethod
    def claim_meta(self) -> dict[str, Any]:
        """Return what a runner records about itself when it claims a job (pid, host, lease...)."""

    #: Seconds between lease renewals (``renew``); None for a store whose ownership needs none.
    lease_interval: float | None = None

    def renew(self, job_ids: list[str]) -> set[str]:
        """Renew this runner's hold on ``job_ids``; return those it could not renew (lost).

        The runner stops the agent of a lost job at once, before its lease can run out, so an
        attempt never runs on two hosts.
        """
        return set()

    @abstractmethod
    def meta_version(self, job_id: str) -> object:
        """A cheap value that changes whenever the job's meta grows (to notice a cancel request)."""

    @abstractmethod
    def job_version(self, job_id: str, state: State) -> object | None:
        """A cheap value that changes when the job file changes; None when it is not in ``state``."""

    @abstractmethod
    def inbox_token(self) -> object:
        """A cheap value that changes whenever a job enters the inbox (idle runners poll it)."""

    def poke(self) -> None:  # noqa: B027 - optional: a store may have nothing to do
        """Wake idle runners (they watch ``inbox_token``): something they wait for may have changed."""

    @abstractmethod
    def describe(self) -> str:
        """The store as a user would name it (a path, or a URL without its password)."""

    # -- this host's files: logs, prompt files, runners, config ---------------------------------
    # Every store keeps these in a local directory (``local``): logs stay on the runner's host.

    local: Path

    def ensure_local(self) -> None:
        """Create the local directory (0700) and its folders; refuse symlinked folders."""
        try:
            if not self.local.exists():
                os.makedirs(self.local, mode=0o700, exist_ok=True)
            if stat.S_ISLNK(os.lstat(self.local).st_mode):
                # A symlinked root is the user's choice; follow it once, then refuse links inside.
                self.local = self.local.resolve()
            if not self.local.is_dir():
                raise UsageError(f"queue root {self.local} is not a directory")
            if stat.S_IMODE(os.stat(self.local).st_mode) != 0o700:
                os.chmod(self.local, 0o700)
            for name in self.LOCAL_DIRS:
                path = self.local / name
                try:
                    os.mkdir(path, 0o700)
                except FileExistsError:
                    if not stat.S_ISDIR(os.lstat(path).st_mode):
                        raise AqError(f"queue root: {name}/ is not a directory (a symlink or file is there)") from None
        except PermissionError as exc:
            raise AqError(f"queue root {self.local}: permission denied ({exc.strerror})") from None

    LOCAL_DIRS: tuple[str, ...] = ("logs", "tmp", "runners", "locks")

    def log_path(self, job_id: str, attempt: int) -> Path:
        return self.local / "logs" / f"{job_id}.{attempt}.log"

    def aq_log_path(self, job_id: str) -> Path:
        return self.local / "logs" / f"{job_id}.aq.log"

    def tmp_path(self, name: str) -> Path:
        return self.local / "tmp" / name

    def open_log(self, path: Path) -> int:
        """Open a log for appending (created 0600, never through a symlink); return the fd.

        Append mode matters: an engine may also write its own lines into the same file.
        """
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)

    def write_private(self, path: Path, data: bytes) -> None:
        _write_file(path, data, replace=True)

    def register_runner(self, pid: int, pidstart: float) -> Path:
        path = self.local / "runners" / f"{pid}"
        _write_file(
            path, f"pid={pid}\npidstart={pidstart}\nhost={host_id()}\nstarted={time.time()}\n".encode(), replace=True
        )
        return path

    def runners(self) -> Iterator[Meta]:
        folder = self.local / "runners"
        for item in sorted(folder.iterdir()) if folder.is_dir() else []:
            try:
                yield Meta.from_bytes(item.read_bytes())
            except OSError:
                continue

    def unregister_runner(self, pid: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.local / "runners" / f"{pid}")

    def config(self):
        """The queue's settings (``config.yaml`` in the local directory)."""
        from aq_core.config import load_config

        return load_config(self.local)

    def try_lock_wait(self, name: str, timeout: float = 10.0) -> Lock:
        """Take the named lock, waiting up to ``timeout`` seconds (for short critical sections)."""
        deadline = time.monotonic() + timeout
        while True:
            lock = self.try_lock(name)
            if lock is not None:
                return lock
            if time.monotonic() >= deadline:
                raise AqError(f"lock {name!r} is held by another aq process for more than {timeout:g}s")
            time.sleep(0.01)


def read_regular_file(path: Path | str, limit: int = 64 << 20, follow: bool = False) -> bytes:
    """Read a regular file, never blocking on a FIFO or device; raise ``ValueError`` for anything else.

    A final symlink is followed only with ``follow`` (a file the user named, not one in the queue).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("not a regular file")
        os.set_blocking(fd, True)
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read(limit)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes, replace: bool = False) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_TRUNC if replace else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def default_root() -> Path:
    env = os.environ.get("AGENT_QUEUE_ROOT")
    return Path(os.path.expanduser(env)) if env else Path.home() / ".aq"


def host_id() -> str:
    """This runner's host: ``AQ_HOST_ID``, else the host name."""
    return os.environ.get("AQ_HOST_ID") or os.uname().nodename


class _FileLock(Lock):
    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


class FsStore(Store):
    """The embedded default store: a queue root on the local filesystem (also its ``local``)."""

    LOCAL_DIRS = (*STATES, "meta", "logs", "tmp", "locks", "runners", "engines")
    fork_safe = True  # reads are plain files: a forked process may read alongside (records' rebuild)

    def __init__(self, root: Path, create: bool = True) -> None:
        self.local = Path(os.path.abspath(os.path.expanduser(root)))
        if create:
            self.ensure_local()

    @property
    def root(self) -> Path:
        return self.local

    def __repr__(self) -> str:
        return f"FsStore({str(self.root)!r})"

    def describe(self) -> str:
        return str(self.root)

    def path(self, job_id: str, state: State) -> Path:
        return self.root / state.value / (job_id + JOB_SUFFIX)

    def meta_path(self, job_id: str) -> Path:
        return self.root / "meta" / f"{job_id}.meta"

    # -- transitions --------------------------------------------------------------------------

    def add(self, job_id: str, data: bytes, meta: Mapping[str, Any]) -> None:
        existing = self.locate(job_id)
        if existing is not None:
            raise UsageError(f"job {job_id!r} already exists (in {existing.value}/): rename the file to queue it again")
        if os.path.lexists(self.meta_path(job_id)):
            raise UsageError(f"job {job_id!r} already has a record in meta/: rename the file to queue it again")
        tmp = self.tmp_path(f"{job_id}.{os.getpid()}.{os.urandom(4).hex()}")
        _write_file(tmp, data)
        try:
            self.append_meta(job_id, meta)
            # link, not rename: never replaces a job file another `aq add` just created.
            os.link(tmp, self.path(job_id, State.INBOX))
        except FileExistsError:
            raise UsageError(f"job {job_id!r} already exists (in inbox/)") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self._sync_dir(self.root / State.INBOX.value)

    def claim(self, job_id: str) -> bool:
        return self.move(job_id, State.INBOX, State.BUILDING)

    def move(self, job_id: str, src: State, dst: State) -> bool:
        target = self.path(job_id, dst)
        if os.path.lexists(target):
            if not os.path.lexists(self.path(job_id, src)):
                return False  # another runner moved it there first
            # rename() would silently replace it; a job is never in two folders.
            raise AqError(f"job {job_id!r}: cannot move to {dst.value}/, a file of that name is already there")
        try:
            os.rename(self.path(job_id, src), target)
        except FileNotFoundError:
            return False
        self._sync_dir(self.root / dst.value)
        return True

    def append_meta(self, job_id: str, items: Mapping[str, Any]) -> None:
        self._append(self.meta_path(job_id), encode_lines(items))

    def read_meta(self, job_id: str) -> Meta:
        return self._read_meta_file(self.meta_path(job_id))

    def list(self, state: State | None = None) -> list[Entry]:
        entries = self.scan(state)
        entries.sort(key=lambda e: (e.queued, e.id))
        return entries

    def entry(self, job_id: str, state: State) -> Entry | None:
        try:
            info = os.lstat(self.path(job_id, state))
        except OSError:
            return None
        return Entry(job_id, state, info.st_mtime, (info.st_ctime_ns, info.st_size))

    def scan(self, state: State | None = None) -> list[Entry]:
        entries: list[Entry] = []
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
                    entries.append(Entry(name[: -len(JOB_SUFFIX)], st, info.st_mtime, (info.st_ctime_ns, info.st_size)))
        return entries

    def read_job(self, job_id: str, state: State) -> bytes:
        path = self.path(job_id, state)
        if os.path.islink(path):
            raise ValueError("the job file is a symlink (aq reads only regular files in its queue)")
        return read_regular_file(path)

    def locate(self, job_id: str) -> State | None:
        for st in STATES:
            if os.path.lexists(self.path(job_id, st)):
                return st
        return None

    def try_lock(self, name: str) -> Lock | None:
        import fcntl
        import hashlib

        digest = hashlib.sha256(name.encode()).hexdigest()[:32]
        path = self.root / "locks" / f"{digest}.lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            os.unlink(path)  # a planted symlink in aq's own scratch folder: never write through it
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            raise
        return _FileLock(fd)

    # -- ownership ----------------------------------------------------------------------------

    def claim_meta(self) -> dict[str, Any]:
        from aq_core.procs import start_time

        return {"pid": os.getpid(), "pidstart": start_time(os.getpid()), "host": host_id()}

    def owner_alive(self, job_id: str, meta: Meta) -> bool:
        from aq_core.procs import alive

        if meta.get("host", host_id()) != host_id():
            return True  # a pid on another machine means nothing here: never take its job
        return alive(meta.integer("pid"), meta.number("pidstart"))

    # -- change detection ---------------------------------------------------------------------

    def meta_version(self, job_id: str) -> object:
        try:
            return os.stat(self.meta_path(job_id)).st_size
        except OSError:
            return -1

    def job_version(self, job_id: str, state: State) -> object | None:
        try:
            st = os.lstat(self.path(job_id, state))
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def inbox_token(self) -> object:
        try:
            return os.stat(self.root / State.INBOX.value).st_mtime_ns
        except FileNotFoundError:
            return 0

    def poke(self) -> None:
        with contextlib.suppress(OSError):
            os.utime(self.root / State.INBOX.value)

    # -- engines ------------------------------------------------------------------------------

    def _engine_meta_path(self, engine: str) -> Path:
        if not engine or "/" in engine or engine.startswith("."):
            raise AqError(f"bad engine name {engine!r}")
        return self.root / "engines" / f"{engine}.meta"

    def append_engine_meta(self, engine: str, items: Mapping[str, Any]) -> None:
        self._append(self._engine_meta_path(engine), encode_lines(items))

    def read_engine_meta(self, engine: str) -> Meta:
        return self._read_meta_file(self._engine_meta_path(engine))

    def engine_names_with_meta(self) -> list[str]:
        folder = self.root / "engines"
        try:
            return sorted(n[: -len(".meta")] for n in os.listdir(folder) if n.endswith(".meta"))
        except FileNotFoundError:
            return []

    # -- helpers ------------------------------------------------------------------------------

    def _append(self, path: Path, data: bytes) -> None:
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
            os.fsync(fd)
        finally:
            os.close(fd)

    def _read_meta_file(self, path: Path) -> Meta:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return Meta()
        with os.fdopen(fd, "rb") as fh:
            return Meta.from_bytes(fh.read())

    @staticmethod
    def _sync_dir(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def open_store(root: str | Path | None = None, create: bool = True, url: str | None = None) -> Store:
    """Return the store: ``--store URL`` / ``$AQ_STORE`` (PostgreSQL), else the filesystem queue in
    ``--root`` / ``$AGENT_QUEUE_ROOT`` / ``~/.aq`` (which is also where a database store keeps this
    host's logs and config)."""
    local = Path(root) if root else default_root()
    url = url or os.environ.get("AQ_STORE") or None
    if url:
        if not url.startswith(("postgresql://", "postgres://")):
            raise UsageError(f"--store: {url.split('@')[-1]!r}: expected a postgresql:// URL")
        from aq_core.store_pg import PgStore

        return PgStore(url, local=local)
    return FsStore(local, create=create)

"""The store interface (SPEC §12): the only way a job's state and meta change.

A store is four small parts, composed (each is an attribute of the store, none inherits another):

- the store itself, ``Store``: a job's state and meta (add, claim, move, append/read meta, list);
- ``store.coord``, ``Coordination``: locks, leases, owner liveness, runner registration, change tokens;
- ``store.engines``, ``EngineRecords``: each engine's append-only record (pauses, limit streaks);
- ``store.files``, ``LocalFiles``: this host's own files (logs, prompt files, ``config.yaml``).

This module owns the interface and the host-side helpers every store shares; it imports no store.
The filesystem store is ``store_fs``, the PostgreSQL store the ``store_pg`` package, and
``store_open.open_store`` picks one.
"""

from __future__ import annotations

import contextlib
import functools
import os
import stat
import time
from abc import ABC, abstractmethod
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping
from enum import StrEnum
from pathlib import Path

from aq_core.errors import AqError, UsageError
from aq_core.meta import Meta

TYPE_CHECKING = False  # typing costs `aq add` milliseconds: only type checkers read these
if TYPE_CHECKING:
    from typing import Any

#: The prefix of a host-scoped lock name (``host_lock``).
HOST_LOCK = "host:"


class State(StrEnum):
    INBOX = "inbox"
    BUILDING = "building"
    DONE = "done"
    FAILED = "failed"


STATES = tuple(State)


# A ``collections.namedtuple``, not a ``typing.NamedTuple``: importing typing costs `aq add` milliseconds.
class Entry(namedtuple("Entry", ("id", "state", "queued", "version"), defaults=(None,))):
    """A job file as listed: its id (str), state (``State``) and when it was queued (epoch seconds,
    for oldest-first order).

    ``version`` changes whenever the job changes state or is rewritten (None: the store cannot say);
    caches of finished jobs' records are keyed by it.
    """

    __slots__ = ()

    id: str
    state: State
    queued: float
    version: object


class Lock(ABC):
    """A held lock; released by ``release()`` or when the holding process dies."""

    @abstractmethod
    def release(self) -> None: ...


class Store(ABC):
    """A job's state and meta: every transition of the queue goes through these methods.

    Optional capabilities (``records`` looks them up with ``getattr``; a store may have none): a store
    that keeps finished jobs' status rows itself, for every host to read (PostgreSQL), has

    - ``finished_rows(entries) -> {id: (json_text, summary_values)}``: the rows it keeps for these
      finished entries, only where kept for the entry's ``version``;
    - ``keep_finished_row(job_id, state, json_text, summary_values) -> version | None``: keep the row of
      a job this store object just moved into ``state``; its version then (None: not moved here);
    - ``keep_finished_rows([(id, version, json_text, summary_values), ...])``: keep rows a reader
      computed from meta; a row whose job has moved since is dropped.

    A store without those keeps a finished job's row as its meta's last line (``row_line``, written
    by ``records.note_finished`` when ``read_meta`` says the meta's ``size``); one that also has
    ``read_meta_bytes(job_id) -> bytes`` (a meta file as it is) lets a cold rebuild take that line
    instead of computing the row (``view_build``).
    """

    coord: Coordination
    engines: EngineRecords
    files: LocalFiles

    @abstractmethod
    def add(self, job_id: str, data: bytes, meta: Mapping[str, Any]) -> None:
        """Queue a new job in ``inbox``; raise ``UsageError`` if the id exists in any state."""

    @abstractmethod
    def claim(self, job_id: str) -> bool:
        """Move a job from ``inbox`` to ``building``; False when another runner got it first.

        A store may commit the claim without waiting for the disk if its first ``append_meta`` to the
        job afterwards waits for it and raises ``AqError`` when the claim was lost meanwhile (a server
        crash): the caller appends to the job before it acts on the claim outside the store."""

    @abstractmethod
    def move(self, job_id: str, src: State, dst: State) -> bool:
        """Move a job between states; False when it was not in ``src`` (someone else moved it)."""

    def move_deciding(self, job_id: str, src: State, dst: State, items: Mapping[str, Any]) -> bool:
        """``append_meta(job_id, items)`` (durably) then ``move(job_id, src, dst)``: a decision and its
        move. A store that can commit the two at once does (PostgreSQL: one durable commit, and no
        reader sees the move without its decision); the lines are appended even when the move fails."""
        self.append_meta(job_id, items)
        return self.move(job_id, src, dst)

    @abstractmethod
    def append_meta(self, job_id: str, items: Mapping[str, Any], durable: bool = True) -> None:
        """Append ``key=value`` lines to the job's meta in one write, seen by every reader at once.

        ``durable=False`` lets a store skip its flush to disk (an fsync) when the caller's next durable
        append to the same job follows before anything depends on these lines surviving a power loss."""

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
        """Return the job file's bytes (at most ``read_limit()``); ``FileNotFoundError`` when not in ``state``."""

    @abstractmethod
    def locate(self, job_id: str) -> State | None:
        """Return the state a job is in, or None when there is no such job."""

    @abstractmethod
    def describe(self) -> str:
        """The store as a user would name it (a path, or a URL without its password)."""


class Coordination(ABC):
    """Who may do what, and noticing change: locks, leases, liveness, runners, change tokens."""

    #: Seconds between lease renewals (``renew``); None for a store whose ownership needs none.
    lease_interval: float | None = None

    def __init__(self, files: LocalFiles) -> None:
        self.files = files

    # -- locks and ownership ----------------------------------------------------------------------

    @abstractmethod
    def try_lock(self, name: str) -> Lock | None:
        """Take the named lock without waiting; None when another holder has it.

        A lock is released by ``Lock.release()`` and, always, when its holder dies. A name holds
        across every runner of the queue; ``host_lock(name)`` makes one that holds on this host only.
        """

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

    def renew(self, job_ids: list[str]) -> set[str]:
        """Renew this runner's hold on ``job_ids``; return those it could not renew (lost).

        The runner stops the agent of a lost job at once, before its lease can run out, so an
        attempt never runs on two hosts.
        """
        return set()

    @abstractmethod
    def claim_meta(self) -> dict[str, Any]:
        """Return what a runner records about itself when it claims a job (pid, host, lease...)."""

    @abstractmethod
    def owner_alive(self, job_id: str, meta: Meta) -> bool:
        """True when the runner that claimed ``job_id`` (per its meta) may still be running it.

        Recovery treats a job in ``building`` whose lock it can take and whose owner is not alive
        as an orphan. Never answer False for a runner that may be alive.
        """

    # -- runners: this host's in the local directory; a shared store also keeps every host's ----------

    def register_runner(self, pid: int, pidstart: float, on_stop: Callable[[], None] | None = None) -> Path:
        """Record a runner of this host; a store that keeps every host's runners also calls ``on_stop``
        (from a thread of its own) when ``request_stop`` asks this runner to stop."""
        path = self.files.root / "runners" / f"{pid}"
        write_file(
            path, f"pid={pid}\npidstart={pidstart}\nhost={host_id()}\nstarted={time.time()}\n".encode(), replace=True
        )
        return path

    def unregister_runner(self, pid: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.files.root / "runners" / f"{pid}")

    def request_stop(self, wait: float) -> tuple[list[str], list[str]]:
        """Ask every live runner of the queue to stop (``aq stop``) and wait up to ``wait`` seconds for
        them to exit; return (the runners asked, those still running), each named ``HOST pid N``.

        Here: SIGTERM to the runners registered in the local directory (this host's). A store shared
        by many hosts asks every host's runners.
        """
        import signal

        from aq_core.procs import alive

        asked: dict[str, tuple[int, float | None]] = {}
        for info in local_runners(self.files.root):
            pid, pidstart = info.integer("pid"), info.number("pidstart")
            if alive(pid, pidstart):
                os.kill(pid, signal.SIGTERM)
                asked[f"{info.get('host') or host_id()} pid {pid}"] = (pid, pidstart)
            else:
                self.unregister_runner(pid)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(alive(*p) for p in asked.values()):
            time.sleep(0.05)
        return sorted(asked), sorted(name for name, p in asked.items() if alive(*p))

    def live_runners(self) -> list[str]:
        """The runners of the queue running now, each named ``HOST pid N`` (``aq explain``'s ``no_runner``).

        Here: those registered in the local directory whose process runs. A store shared by many
        hosts names every host's.
        """
        from aq_core.procs import alive

        return sorted(
            f"{info.get('host') or host_id()} pid {info.integer('pid')}"
            for info in local_runners(self.files.root)
            if alive(info.integer("pid"), info.number("pidstart"))
        )

    # -- change tokens: cheap values that pollers compare ------------------------------------------

    @abstractmethod
    def meta_version(self, job_id: str) -> object:
        """A cheap value that changes whenever the job's meta grows (to notice a cancel request)."""

    @abstractmethod
    def job_version(self, job_id: str, state: State) -> object | None:
        """A cheap value that changes when the job file changes; None when it is not in ``state``."""

    @abstractmethod
    def inbox_token(self) -> object:
        """A cheap value that changes whenever a job enters the inbox (idle runners poll it).

        A store whose listing of the waiting jobs can read the token in the same round trip also has
        ``listed_inbox_token()``: the token as this thread's last such listing read it, once (None:
        none since). A runner filling its workers anyway then keeps that one instead of asking first.
        """

    def poke(self) -> None:  # noqa: B027 - optional: a store may have nothing to do
        """Wake idle runners (they watch ``inbox_token``): something they wait for may have changed.

        A store whose ``poke`` can reach its runners at once also has ``listen(on_wake)``: it returns a
        channel calling ``on_wake`` on each poke (``close()`` ends it, ``ring()`` wakes it from a signal
        handler), or None. The runner calls it when the store has it; otherwise it only polls.
        """


class EngineRecords(ABC):
    """Each engine's record (pauses, limit streaks): append-only ``key=value`` lines, like a job's meta."""

    @abstractmethod
    def append(self, engine: str, items: Mapping[str, Any]) -> None:
        """Append to an engine's record, durably, in one write."""

    @abstractmethod
    def read(self, engine: str) -> Meta:
        """Return an engine's record (empty when it has none)."""

    @abstractmethod
    def names(self) -> list[str]:
        """Return the engines that have a record, sorted."""


class LocalFiles:
    """This host's files, in the local directory ``root``: logs, prompt files, runners, config.

    Every store keeps them on the runner's host, never in a shared store (logs stay where they ran).
    """

    FOLDERS: tuple[str, ...] = ("logs", "tmp", "runners", "locks")

    def __init__(self, root: Path | str, folders: tuple[str, ...] = FOLDERS) -> None:
        self.root = Path(os.path.abspath(os.path.expanduser(root)))
        self.folders = folders

    def ensure(self) -> None:
        """Create the local directory (0700) and its folders; refuse symlinked folders."""
        try:
            if not self.root.exists():
                os.makedirs(self.root, mode=0o700, exist_ok=True)
            if stat.S_ISLNK(os.lstat(self.root).st_mode):
                # A symlinked root is the user's choice; follow it once, then refuse links inside.
                self.root = self.root.resolve()
            if not self.root.is_dir():
                raise UsageError(f"queue root {self.root} is not a directory")
            if stat.S_IMODE(os.stat(self.root).st_mode) != 0o700:
                os.chmod(self.root, 0o700)
            for name in self.folders:
                path = self.root / name
                try:
                    os.mkdir(path, 0o700)
                except FileExistsError:
                    if not stat.S_ISDIR(os.lstat(path).st_mode):
                        raise AqError(f"queue root: {name}/ is not a directory (a symlink or file is there)") from None
        except PermissionError as exc:
            raise AqError(f"queue root {self.root}: permission denied ({exc.strerror})") from None

    def log_path(self, job_id: str, attempt: int) -> Path:
        return self.root / "logs" / f"{job_id}.{attempt}.log"

    def aq_log_path(self, job_id: str) -> Path:
        return self.root / "logs" / f"{job_id}.aq.log"

    def tmp_path(self, name: str) -> Path:
        return self.root / "tmp" / name

    def open_log(self, path: Path) -> int:
        """Open a log for appending (created 0600, never through a symlink); return the fd.

        Append mode matters: an engine may also write its own lines into the same file.
        """
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)

    def write_private(self, path: Path, data: bytes) -> None:
        write_file(path, data, replace=True)

    def config(self):
        """The queue's settings (``config.yaml`` in the local directory)."""
        from aq_core.config import load_config

        return load_config(self.root)

    def profiles(self) -> dict[str, dict[str, Any]]:
        """The config's ``profiles:``, the whole file checked as ``config()`` checks it, without
        building the settings' dataclass (``aq add`` needs no more)."""
        from aq_core.config import load_settings

        return load_settings(self.root).get("profiles", {})


def local_runners(root: Path) -> Iterator[Meta]:
    """The runners registered in the local directory ``root`` (live or not: check their pids)."""
    folder = root / "runners"
    for item in sorted(folder.iterdir()) if folder.is_dir() else []:
        try:
            yield Meta.from_bytes(item.read_bytes())
        except OSError:
            continue


def host_lock(name: str | None) -> str | None:
    """The name of a lock that holds among this host's runners only (None stays None).

    For a lock on something that exists only on this host, such as a path: the same path on another
    host is another thing, and runners there must not wait for it. The host id is part of the name.
    """
    return None if name is None else f"{HOST_LOCK}{host_id()}:{name}"


@functools.cache
def read_limit() -> int:
    """How much of a job file a store reads: one byte more than a job may have (``job.MAX_JOB_BYTES``),
    so a file over the limit is seen to be (and refused as) too large, and never read whole."""
    from aq_core.job import MAX_JOB_BYTES  # here, not at the top: `aq status` parses no job

    return MAX_JOB_BYTES + 1


def read_regular_file(path: Path | str, limit: int | None = None, follow: bool = False) -> bytes:
    """Read a regular file (at most ``limit`` bytes, else ``read_limit()``), never blocking on a FIFO
    or device; raise ``ValueError`` for anything else.

    A final symlink is followed only with ``follow`` (a file the user named, not one in the queue).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("not a regular file")
        os.set_blocking(fd, True)
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read(read_limit() if limit is None else limit)
    finally:
        os.close(fd)


def write_file(path: Path, data: bytes, replace: bool = False) -> None:
    """Write a private file (0600, never through a symlink) durably; without ``replace``, only a new one."""
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

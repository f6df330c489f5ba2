"""``aq run`` over several processes: how many, each one's share of the workers, the fork of the extra
runners (before any thread or store connection exists), the stop signals forwarded to them, and their
end with the process the user started (``PR_SET_PDEATHSIG``).

Each process is a full runner (``runner.Runner``), registered as any runner is; they share the queue
as several runners on one root always could (SIGTERM-safe locks, claims, pauses, probes, budgets).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from aq_core.errors import AqError, UsageError
from aq_core.store import Store


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity), else the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def shares(workers: int, processes: int) -> list[int]:
    """``workers`` split over ``processes`` as evenly as possible, the larger shares first."""
    base, extra = divmod(workers, processes)
    return [base + (1 if i < extra else 0) for i in range(processes)]


def process_count(workers: int, processes: int | None) -> int:
    """How many runner processes: ``processes`` when given (at most one per worker), else one per
    usable CPU up to ``workers``; 1 where this interpreter cannot fork."""
    if processes is not None and processes < 1:
        raise UsageError(f"--processes: must be at least 1 (got {processes})")
    wanted = processes if processes is not None else usable_cpus()
    if not hasattr(os, "fork"):
        return 1
    return max(1, min(workers, wanted))


class Group:
    """The processes of one ``aq run``, as the first one (the one the user started) sees them.

    ``Runner`` asks it for its start line, hands it each stop signal to forward, and waits for the
    others (``wait``) before its drained report and its last line."""

    def __init__(self, workers: int, split: list[int]) -> None:
        self.workers = workers
        self.split = split
        self.first = os.getpid()
        self.children: dict[int, int] = {}  # pid -> its share of the workers
        self.status: dict[int, int] = {}  # pid -> exit code (negative: killed by that signal)
        self.journal: Any = None
        self.stopping = False  # set when a stop signal came: an ending child is then expected
        self._threads: list[threading.Thread] = []

    def started_line(self, pid: int) -> str:
        if pid != self.first:
            return f"runner started (pid {pid}, {self.share(pid)} of the {self.workers} workers of pid {self.first})"
        runs = ", ".join(f"pid {p} runs {n}" for p, n in [(self.first, self.split[0]), *self.children.items()])
        return f"runner started (pid {pid}, {self.workers} workers in {len(self.split)} processes: {runs})"

    def stopped_line(self, pid: int) -> str:
        if pid != self.first:
            return f"runner stopped (pid {pid}, of pid {self.first})"
        return f"runner stopped (pid {pid} and the {len(self.split) - 1} other processes)"

    def share(self, pid: int) -> int:
        return self.children.get(pid, self.split[0])

    def forward(self, signum: int) -> None:
        """Called from the first process's signal handler: the same signal to the others (no lock taken)."""
        if os.getpid() != self.first:
            return
        self.stopping = True
        for pid in list(self.children):
            if pid not in self.status:
                with contextlib.suppress(OSError):  # already gone (reaped by its watcher meanwhile)
                    os.kill(pid, signum)

    def watch(self, journal: Any) -> None:
        """Reap each child in a thread of its own; an unexpected end is said in the journal."""
        self.journal = journal
        for pid in self.children:
            thread = threading.Thread(target=self._reap, args=(pid,), name=f"aq-runner-{pid}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _reap(self, pid: int) -> None:
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        self.status[pid] = code
        # Exit 0 is a drained ``--once`` or a stop (a signal or ``aq stop`` may reach it first): not news.
        if code != 0 and self.journal is not None:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
            rest = "" if self.stopping else "; the other processes go on"
            self.journal.say(None, f"runner process pid {pid} ({self.share(pid)} workers) {how}{rest}")

    def wait(self) -> None:
        """Wait until every other process has exited (a drained ``--once`` run, or a stop)."""
        for thread in self._threads:
            thread.join()

    def drained(self) -> bool:
        """Whether this process sends the drained report: the first, once the others have drained too."""
        if os.getpid() != self.first:
            return False
        self.stopping = True  # the others end by themselves now
        self.wait()
        return True

    def exit_code(self) -> int:
        """Non-zero when any other process failed: its own code, 1 for one killed by a signal."""
        bad = [code for code in self.status.values() if code != 0]
        return next((code for code in bad if code > 0), 1) if bad else 0


def run(open_store: Callable[[], Store], workers: int = 1, once: bool = False, processes: int | None = None) -> int:
    """``aq run``: ``workers`` attempts at a time over ``processes`` runner processes (see ``process_count``)."""
    from aq_core.runner import Runner
    from aq_core.runner import run as run_one

    if workers < 1:
        raise AqError("--workers must be at least 1")
    count = process_count(workers, processes)
    store = open_store()  # a store that cannot be opened says so once, before any fork
    if count > 1:
        _load_shared()
    if count > 1 and threading.active_count() > 1:  # a fork beside running threads could inherit their locks
        from aq_core.journal import Journal

        Journal(store).say(None, f"runner runs its {workers} workers in one process, not {count}: {_THREADED}")
        count = 1
    if count == 1:
        return run_one(store, workers=workers, once=once)
    if not getattr(store, "fork_safe", False):
        close = getattr(store, "close", None)
        if close is not None:
            close()  # a connection is never shared across a fork: each process opens its own
        store = None
    group = Group(workers, shares(workers, count))
    sys.stdout.flush()
    sys.stderr.flush()  # what is buffered now would be written once by each process
    try:
        for share in group.split[1:]:
            pid = os.fork()
            if pid == 0:
                _child(group, share, store, open_store, once)  # never returns
            group.children[pid] = share
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
        runner = Runner(store if store is not None else open_store(), workers=group.split[0], once=once)
        runner.group = group
        group.watch(runner.journal)
        code = runner.run()
    finally:
        group.forward(signal.SIGTERM)  # no-op for those already gone; stops the rest when this one failed
        group.wait()
    return code or group.exit_code()


_THREADED = "other threads already run in this process, and a fork could leave their locks held"


def _load_shared() -> None:
    """Load once, before the fork, what every runner loads at its start: the plugins (pluggy, the
    entry points' metadata, each engine's module) and the wake-up channel. The forked processes share
    it (about 100 ms of CPU a process otherwise); a plugin that fails to load says so once."""
    from aq_core import plugins, wake  # noqa: F401 - imported to be shared

    plugins.installed_engines()
    plugins.duplicate_engines()
    plugins.failure_classes()


def _child(group: Group, share: int, store: Store | None, open_store: Callable[[], Store], once: bool) -> None:
    """A runner process forked by the first: dies with it, runs its share, and exits (never returns)."""
    code = 1
    try:
        _die_with_parent(group.first)
        from aq_core.runner import Runner

        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
        group.children = {os.getpid(): share}  # what this process needs to know of the group: its share
        runner = Runner(store if store is not None else open_store(), workers=share, once=once)
        runner.group = group
        code = runner.run()
    except AqError as exc:
        print(f"aq: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        code = 130
    except BaseException as exc:  # a bug: one line, as the command would say it; never back into the caller
        print(f"aq: internal error in runner process {os.getpid()}: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)


def _die_with_parent(parent: int) -> None:
    """SIGKILL when the first process dies, however it dies (``kill -9`` too): the kernel's
    ``PR_SET_PDEATHSIG`` on Linux, else a thread that looks each second. Its agents are then
    orphans, which recovery handles as for any killed runner."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) == 0:  # PR_SET_PDEATHSIG
            if os.getppid() != parent:  # it died before the prctl: no signal will come
                os.kill(os.getpid(), signal.SIGKILL)
            return

    def look() -> None:
        while os.getppid() == parent:
            threading.Event().wait(1.0)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=look, name="aq-parent-watch", daemon=True).start()

"""``aq run``: the main loop. Asks ``decisions.choose`` which job is next, takes its locks, claims it
and runs its attempt on a worker thread; recovers orphans, renews leases, ends engine pauses."""

from __future__ import annotations

import contextlib
import gc
import os
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

from aq_core import decisions, limits, plugins, transitions
from aq_core.attempt import Attempt, claim_lines
from aq_core.config import QueueConfig
from aq_core.errors import AqError, StoreUnavailable
from aq_core.inbox import Inbox, read_ahead
from aq_core.journal import Journal
from aq_core.notifications import Notifier, send_job_finished
from aq_core.procs import start_time
from aq_core.recovery import recover, waiting_for_locks
from aq_core.report import send_drained
from aq_core.store import Lock, State, Store

SPEND_REFRESH = 30.0  # seconds between re-reading today's spend (other runners' attempts)
# How often an idle runner looks at inbox/ (a stat of one directory): the fallback for a store without a
# wake-up channel (``Coordination.listen``) and for jobs that arrive without ``aq add``.
POLL = float(os.environ.get("AQ_POLL_SECONDS") or 0.05)
RECOVER_EVERY = 1.0


@dataclass
class Runner:
    """One ``aq run`` process: ``workers`` attempts at a time; ``once`` drains the queue and exits."""

    store: Store
    workers: int = 1
    once: bool = False
    journal: Journal = field(default=None)  # type: ignore[assignment]
    # One process of several of one ``aq run`` (``runner_procs.Group``): says the start line, forwards the
    # stop signals to the others, and holds the drained report until they have drained too.
    group: Any = None

    def __post_init__(self) -> None:
        self.config: QueueConfig = self.store.files.config()
        self.journal = self.journal or Journal(self.store)
        self.pid = os.getpid()
        self.pidstart = start_time(self.pid)
        self.claim_meta = self.store.coord.claim_meta()
        self.stopping = threading.Event()
        self.signalled = False  # set by the signal handler; the main loop turns it into ``stopping``
        self.wake = threading.Event()
        self.running: dict[str, Attempt] = {}
        self._lock = threading.Lock()
        # Worker threads are reused from attempt to attempt: starting a thread per job cost more than
        # many a short job's own work. One is started only when every thread has an attempt that has
        # not ended, so there are at most ``workers``.
        self._work: queue.SimpleQueue[Attempt | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self.notifier = Notifier(self.config, lambda line: self.journal.say(None, line))
        # Engines whose pause just ended run one job at a time until an attempt ends without a
        # limit: a printed reset time is re-checked, not trusted blindly.
        self.probing: set[str] = set()  # engines running one job at a time: limits.probing_engines
        self._spend: dict[str, float] = {}
        self._daily = limits.DailySpend()
        self._spend_at = float("-inf")
        self._budget_noted: set[tuple[str, float]] = set()
        self.inbox = Inbox(self.store, self.config, self.journal, self.notify_finished)
        self.pauses: dict[str, limits.Pause] = {}
        self.channel: Any = None  # the store's wake-up channel while ``run`` runs

    # -- main loop -----------------------------------------------------------------------------

    def run(self) -> int:
        self.store.coord.register_runner(self.pid, self.pidstart or 0.0, on_stop=self._stop_requested)
        listen = getattr(self.store.coord, "listen", None)  # a store that can wake its runners at once
        self.channel = listen(self.wake.set) if listen is not None else None
        previous = self._install_signals()
        try:
            plural = "s" if self.workers != 1 else ""
            started = f"runner started (pid {self.pid}, {self.workers} worker{plural})"
            self.journal.say(None, self.group.started_line(self.pid) if self.group is not None else started)
            self._check_setup()
            # What start-up made (modules, plugins, the config) lives as long as the runner: out of the
            # collector's sight, each collection walks only what the jobs since made.
            gc.freeze()
            while True:
                try:
                    self._loop()
                    # Drained: the report, if config asks for it (once for all the processes of one run).
                    drained = self.once and not self.stopping.is_set()
                    if drained and (self.group is None or self.group.drained()):
                        send_drained(self.store, self.notifier, self.pidstart)
                    break
                except StoreUnavailable as exc:
                    # A shared store is away (restart, partition): holds about to run out stop their
                    # agents through _renew; everything else waits until it is back.
                    self.journal.say(None, f"{exc}; trying again")
                    self._renew()
                    self.stopping.wait(min(1.0, self.store.coord.lease_interval or 1.0))
        finally:
            gc.unfreeze()  # a runner run inside a longer process (tests) leaves the collector as it was
            self._stop_all()
            if self.group is not None:
                self.group.wait()  # the first process's last line comes after the others'
            self.notifier.drain()
            self.notifier.close()
            self._restore_signals(previous)
            if self.channel is not None:
                self.channel.close()
            self.store.coord.unregister_runner(self.pid)
            self.journal.say(None, "runner stopped" if self.group is None else self.group.stopped_line(self.pid))
        return 0

    def _loop(self) -> None:
        last_recover = last_renew = float("-inf")
        seen_mtime: object = None
        next_wake: float | None = None
        waiting = True
        orphans_locked = False  # --once: an orphan to recover here whose lock another process holds
        told: set[str] = set()
        listed = getattr(self.store.coord, "listed_inbox_token", None)
        while not self.stopping.is_set():
            if self.signalled:
                self.stopping.set()
                break
            if time.monotonic() - last_recover >= RECOVER_EVERY:
                locked: list[str] = []
                recover(self.store, self.journal, on_finished=self.notify_finished, locked=locked)
                orphans_locked = (
                    self.once and bool(locked) and waiting_for_locks(self.store, self.journal, locked, told)
                )
                last_recover = time.monotonic()
            if self.store.coord.lease_interval and time.monotonic() - last_renew >= self.store.coord.lease_interval:
                self._renew()
                last_renew = time.monotonic()
            self._reap()
            free = self.workers - len(self.running)
            if free > 0:  # with every worker busy the inbox is not looked at: no poll of its token
                due = (next_wake is not None and time.time() >= next_wake) or self.wake.is_set()
                # A fill that is due anyway keeps the token its listing read, where the store reads
                # it there (a shared store: a round trip a job less); else the token is read first.
                mtime = None if due and listed is not None else self.store.coord.inbox_token()
                if due or mtime != seen_mtime:
                    self.wake.clear()
                    next_wake, waiting = self._fill(free)
                    # None (no token read with the listing) differs from every token: look again.
                    seen_mtime = listed() if mtime is None else mtime
            elif self.wake.is_set():
                # Every worker busy: the wake-up (an add, a job's end) is taken now and the loop runs
                # again at once, so a job that ended meanwhile is reaped and its worker filled; left
                # set, it would end every wait at once until a worker freed (a loop spinning on a CPU).
                self.wake.clear()
                continue
            if self.once and not self.running and not waiting and not orphans_locked:
                return
            if self.signalled or self.stopping.is_set():
                continue  # a stop's wake-up may be the one cleared above: stop now, not a ``POLL`` later
            # A look that is due only matters with a worker free: with none, a due time past must not
            # make every wait zero (a job's end wakes the loop).
            timeout = POLL if next_wake is None or free <= 0 else max(0.0, min(POLL, next_wake - time.time()))
            self.wake.wait(timeout)

    def _renew(self) -> None:
        with self._lock:
            running = dict(self.running)
        try:
            lost = self.store.coord.renew(list(running))
        except Exception as exc:  # the store is unreachable: every hold is at risk
            self.journal.say(None, f"store: cannot renew leases ({type(exc).__name__}: {exc})")
            lost = set(running)
        for job_id in lost:
            if job_id in running:
                running[job_id].lose_lease()

    def _check_setup(self) -> None:
        """Say what in the configuration will not work as the user expects; rebuild lost records."""
        installed = plugins.installed_engines()
        for name in self.config.budgets:
            if name != "daily_usd" and name not in installed:
                listing = ", ".join(sorted(installed))
                self.journal.say(
                    None, f"config: budgets.{name}: no installed engine has that name (installed: {listing})"
                )
        for name, dists in plugins.duplicate_engines().items():
            self.journal.say(None, f"engine {name!r} is provided by {' and '.join(dists)}; {dists[0]} wins")
        if not self.store.engines.names():
            # Engine records lost (or never written): pauses are also in the waiting jobs' meta.
            entries = self.store.list(State.INBOX)
            with read_ahead(self.store, [e.id for e in entries], data=False):  # one round trip, not one a job
                inbox = [(e.id, self.store.read_meta(e.id)) for e in entries]
            if limits.rebuild_engine_meta(self.store, inbox):
                self.journal.say(None, "engine pauses rebuilt from the waiting jobs' meta")

    def _reap(self) -> None:
        with self._lock:
            done = [job_id for job_id, attempt in self.running.items() if attempt.ended.is_set()]
            for job_id in done:
                del self.running[job_id]

    def _fill(self, free: int) -> tuple[float | None, bool]:
        """Start up to ``free`` attempts; return (when to look again, whether jobs are waiting).

        Which job is next is ``decisions.choose``'s to say; this gathers the facts and takes the locks.
        """
        now = time.time()
        # A shared store reads every engine's records in one query here, not one per engine and use.
        with getattr(self.store.engines, "prefetched", contextlib.nullcontext)():
            expired = limits.expired_pauses(self.store, now)
            self.pauses = limits.active_pauses(self.store, now)
            self.probing = limits.probing_engines(self.store, now)
        self._end_pauses(expired)  # each read again under the engine's lock
        if self.config.budgets and time.monotonic() - self._spend_at > SPEND_REFRESH:
            self._refresh_spend(now)
        spent = {n: why for n in plugins.installed_engines() if (why := self._budget_block(n))}
        view = decisions.View(
            now=now,
            paused={name: p.until for name, p in self.pauses.items()},
            probing=frozenset(self.probing),
            budget_spent=frozenset(spent),
        )
        held: set[str] = set()
        with self._lock:
            running = set(self.running)
        seen = self.inbox.round(running)
        view = replace(view, states=self.inbox.states)
        pick = None
        started = False
        while free > 0:
            pick = decisions.choose(seen, replace(view, held=frozenset(held)))
            for name in pick.budget_blocked:
                self._budget_note(name, spent[name])
            if pick.choice is None:
                break
            outcome = self._start(pick.choice)
            if outcome.startswith("lock:"):
                held.add(outcome[5:])
                continue
            self.inbox.skip.add(pick.choice.job)
            if outcome == "started":
                free -= 1
                started = True
        if pick is not None and pick.doomed:
            # Their dependency failed for good: they fail too, and their own dependants next round.
            self.inbox.fail_dependants(pick.doomed)
        # A job held back only by today's budget is not waited for: it runs tomorrow.
        waiting = started or self.inbox.busy or (pick is not None and (pick.waiting or bool(pick.doomed)))
        next_wake = pick.wake if pick is not None else min(view.paused.values(), default=None)
        # A lock held by another runner frees without touching inbox/: look again soon.
        if waiting and next_wake is None:
            next_wake = time.time() + 0.25
        return next_wake, waiting

    def _budget_block(self, engine: str) -> str | None:
        return limits.budget_block(self.config, self._spend, engine) if self.config.budgets else None

    def _start(self, choice: decisions.Choice) -> str:
        """Take the chosen job's locks and claim it: ``started``, ``busy``, or ``lock:<name>`` (held elsewhere)."""
        job_id = choice.job
        job = self.inbox.job(job_id)
        # A store may take the locks a claim follows without waiting for the disk, confirmed by the claim.
        take = getattr(self.store.coord, "try_lock_to_claim", self.store.coord.try_lock)
        job_lock = take("job:" + job_id)
        if job_lock is None or job is None or not self.inbox.still_waiting(job_id):
            if job_lock is not None:
                job_lock.release()
            self.inbox.busy = True
            return "busy"
        locks: list[Lock] = [job_lock]
        for name in choice.locks:
            held = take(name)
            if held is None:
                for lock in locks:
                    lock.release()
                self.inbox.busy = True
                return "lock:" + name
            locks.append(held)
        lines = claim_lines(self, job)
        if not transitions.claim(self.store, job_id, lines):
            for lock in locks:
                lock.release()
            self.inbox.busy = True
            return "busy"
        attempt = Attempt(self, job, choice.engine, locks, lines)
        with self._lock:
            self.running[job_id] = attempt
            thread = None
            # A thread whose attempt has ended is idle, or about to be: it takes the next from the queue.
            if sum(1 for a in self.running.values() if not a.ended.is_set()) > len(self._threads):
                thread = threading.Thread(target=self._worker, name=f"aq-worker-{len(self._threads) + 1}", daemon=True)
                self._threads.append(thread)
        self._work.put(attempt)
        if thread is not None:
            thread.start()
        return "started"

    def _worker(self) -> None:
        """A worker thread: runs the attempts it is handed, one at a time, until handed None."""
        while (attempt := self._work.get()) is not None:
            try:
                attempt.run()  # sets ``attempt.ended`` however it ends
            except Exception as exc:  # the worker must live on: attempts are queued for it
                self.journal.say(attempt.job.id, f"internal error: {type(exc).__name__}: {exc}")

    def _budget_note(self, engine: str, why: str) -> None:
        key = (engine, limits.day_start(time.time()))
        if key not in self._budget_noted:
            self._budget_noted.add(key)
            self.journal.say(None, f"budget: {why}; no new {engine} job starts until tomorrow")

    def _refresh_spend(self, now: float) -> None:
        self._spend = self._daily.totals(self.store, now)  # reads only the meta of jobs that changed
        self._spend_at = time.monotonic()

    def _end_pauses(self, expired: list[limits.Pause]) -> None:
        for pause in expired:
            ended = limits.end_pause(self.store, pause.engine, "expired")
            if ended is None:
                continue  # another runner ended it first
            self.journal.say(None, f"engine {pause.engine}: pause over; trying one job before the rest")
            self.notifier.send(
                "engine_resumed",
                {
                    "engine": pause.engine,
                    "until": pause.until,
                    "reason": pause.reason,
                    "job": pause.job,
                    "by": "expired",
                },
            )

    def attempt_ended(self, engine: str, cls: str, cost: float | None) -> None:
        """Called by an attempt: count today's spend (other runners' spend is re-read periodically)."""
        if cost:
            self._spend[engine] = self._spend.get(engine, 0.0) + cost

    def notify_finished(self, job_id: str, state: State, pr: str | None | bool = True) -> None:
        """A job reached done/ or failed/ (``transitions`` journalled its row): tell the notifiers.

        ``pr``: the job's ``pr:`` key when the caller knows it (an attempt does), else True."""
        send_job_finished(self.store, self.notifier, job_id, state, pr)

    # -- stopping -----------------------------------------------------------------------------

    def _install_signals(self) -> dict[int, object]:
        previous: dict[int, object] = {}
        if threading.current_thread() is not threading.main_thread():
            return previous

        def handler(signum: int, frame: object) -> None:
            # No lock may be taken here: the handler runs on the main thread between two bytecodes,
            # maybe while it holds that very lock (``wake.wait`` holds its condition's lock around
            # each poll), and would wait for itself forever. The loop sees the flag at once through the
            # wake-up channel (one write, no lock), else within ``POLL``.
            self.signalled = True
            if self.group is not None:
                self.group.forward(signum)
            if self.channel is not None:
                self.channel.ring()

        # Several processes of one ``aq run`` also stop together on a hang-up (each hears the terminal's).
        stops = (signal.SIGTERM, signal.SIGINT) + ((signal.SIGHUP,) if self.group is not None else ())
        for sig in stops:
            previous[sig] = signal.signal(sig, handler)
        return previous

    def _stop_requested(self) -> None:
        """`aq stop` asked through a shared store (from any host): stop as on SIGTERM."""
        self.journal.say(None, "stop requested by aq stop")
        self.stopping.set()
        self.wake.set()

    @staticmethod
    def _restore_signals(previous: dict[int, object]) -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)  # type: ignore[arg-type]

    def _stop_all(self) -> None:
        self.stopping.set()
        with self._lock:
            attempts = list(self.running.values())
        if attempts:
            self.journal.say(
                None, f"stopping: checkpointing {len(attempts)} running job(s) and putting them back in inbox/"
            )
        for attempt in attempts:
            attempt.ended.wait()
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._work.put(None)
        for thread in threads:
            thread.join()

    def job_finished(self) -> None:
        self.wake.set()


def run(store: Store, workers: int = 1, once: bool = False) -> int:
    if workers < 1:
        raise AqError("--workers must be at least 1")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
    return Runner(store, workers=workers, once=once).run()

"""The runner: picks the oldest eligible job, runs its attempts on worker threads, finishes them."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from aq_core import limits, plugins
from aq_core.attempt import Attempt
from aq_core.config import QueueConfig
from aq_core.errors import AqError, JobInvalid, StoreUnavailable, shown
from aq_core.job import Job, job_id_for, parse_job
from aq_core.journal import Journal
from aq_core.meta import Meta
from aq_core.notifications import Notifier, send_job_finished
from aq_core.procs import start_time
from aq_core.recovery import recover
from aq_core.store import Entry, Lock, State, Store, host_lock

SPEND_REFRESH = 30.0  # seconds between re-reading today's spend (other runners' attempts)
POLL = 0.05  # how often an idle runner looks at inbox/ (a stat of one directory)
RECOVER_EVERY = 1.0


@dataclass(frozen=True)
class Refused:
    """An inbox file the runner leaves alone (its id is taken): said once, never run."""

    reason: str


@dataclass
class Candidate:
    entry: Entry
    meta: Meta
    job: Job | None = None
    error: str | Refused | None = None


@dataclass
class Runner:
    """One ``aq run`` process: ``workers`` attempts at a time; ``once`` drains the queue and exits."""

    store: Store
    workers: int = 1
    once: bool = False
    journal: Journal = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.config: QueueConfig = self.store.files.config()
        self.journal = self.journal or Journal(self.store)
        self.pid = os.getpid()
        self.pidstart = start_time(self.pid)
        self.claim_meta = self.store.coord.claim_meta()
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.running: dict[str, tuple[threading.Thread, Attempt]] = {}
        self._lock = threading.Lock()
        self._parsed: dict[str, tuple[tuple[float, int], Job | str]] = {}
        self.notifier = Notifier(self.config, lambda line: self.journal.say(None, line))
        # Engines whose pause just ended run one job at a time until an attempt ends without a
        # limit: a printed reset time is re-checked, not trusted blindly.
        self.probing: set[str] = set()  # engines running one job at a time: limits.probing_engines
        self._spend: dict[str, float] = {}
        self._spend_at = float("-inf")
        self._budget_noted: set[tuple[str, float]] = set()
        self._refused: set[str] = set()
        self.pauses: dict[str, limits.Pause] = {}

    # -- main loop -----------------------------------------------------------------------------

    def run(self) -> int:
        self.store.coord.register_runner(self.pid, self.pidstart or 0.0, on_stop=self._stop_requested)
        previous = self._install_signals()
        try:
            self.journal.say(
                None, f"runner started (pid {self.pid}, {self.workers} worker{'s' if self.workers != 1 else ''})"
            )
            self._check_setup()
            while True:
                try:
                    self._loop()
                    break
                except StoreUnavailable as exc:
                    # A shared store is away (restart, partition): holds about to run out stop their
                    # agents through _renew; everything else waits until it is back.
                    self.journal.say(None, f"{exc}; trying again")
                    self._renew()
                    self.stopping.wait(min(1.0, self.store.coord.lease_interval or 1.0))
        finally:
            self._stop_all()
            self.notifier.drain()
            self.notifier.close()
            self._restore_signals(previous)
            self.store.coord.unregister_runner(self.pid)
            self.journal.say(None, "runner stopped")
        return 0

    def _loop(self) -> None:
        last_recover = last_renew = float("-inf")
        seen_mtime: object = None
        next_wake: float | None = None
        waiting = True
        while not self.stopping.is_set():
            if time.monotonic() - last_recover >= RECOVER_EVERY:
                recover(self.store, self.journal, on_finished=self.job_done)
                last_recover = time.monotonic()
            if self.store.coord.lease_interval and time.monotonic() - last_renew >= self.store.coord.lease_interval:
                self._renew()
                last_renew = time.monotonic()
            self._reap()
            mtime = self.store.coord.inbox_token()
            free = self.workers - len(self.running)
            due = next_wake is not None and time.time() >= next_wake
            if free > 0 and (mtime != seen_mtime or due or self.wake.is_set()):
                self.wake.clear()
                seen_mtime = mtime
                next_wake, waiting = self._fill(free)
            if self.once and not self.running and not waiting:
                return
            timeout = POLL if next_wake is None else max(0.0, min(POLL, next_wake - time.time()))
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
                running[job_id][1].lose_lease()

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
            inbox = ((e.id, self.store.read_meta(e.id)) for e in self.store.list(State.INBOX))
            if limits.rebuild_engine_meta(self.store, inbox):
                self.journal.say(None, "engine pauses rebuilt from the waiting jobs' meta")

    def _reap(self) -> None:
        with self._lock:
            done = [job_id for job_id, (thread, _) in self.running.items() if not thread.is_alive()]
            for job_id in done:
                del self.running[job_id]

    def _fill(self, free: int) -> tuple[float | None, bool]:
        """Start up to ``free`` attempts; return (when to look again, whether jobs are waiting)."""
        now = time.time()
        self._end_pauses(now)
        self.pauses = limits.active_pauses(self.store, now)
        self.probing = limits.probing_engines(self.store, now)
        next_wake: float | None = min((p.until for p in self.pauses.values()), default=None)
        if self.config.budgets and time.monotonic() - self._spend_at > SPEND_REFRESH:
            self._refresh_spend(now)
        waiting = False
        for entry in self.store.list(State.INBOX):
            if free <= 0:
                waiting = True
                break
            if entry.id in self.running:
                continue
            cand = self._candidate(entry)
            if cand is None:
                continue
            eligible_at = cand.meta.number("next_eligible")
            if eligible_at and eligible_at > now:
                waiting = True
                next_wake = eligible_at if next_wake is None else min(next_wake, eligible_at)
                continue
            outcome = self._start(cand)
            if outcome == "started":
                free -= 1
            # A job held back only by today's budget is not waited for: it runs tomorrow.
            waiting = waiting or outcome in ("started", "busy")
        # A lock held by another runner frees without touching inbox/: look again soon.
        if waiting and next_wake is None:
            next_wake = time.time() + 0.25
        return next_wake, waiting

    def _candidate(self, entry: Entry) -> Candidate | None:
        meta = self.store.read_meta(entry.id)
        key = self.store.coord.job_version(entry.id, State.INBOX)
        if key is None:
            return None
        cached = self._parsed.get(entry.id)
        if cached and cached[0] == key:
            parsed = cached[1]
        else:
            parsed = self._parse(entry, meta)
            self._parsed[entry.id] = (key, parsed)
        if isinstance(parsed, str | Refused):
            return Candidate(entry, meta, error=parsed)
        return Candidate(entry, meta, job=parsed)

    def _parse(self, entry: Entry, meta: Meta) -> Job | str | Refused:
        name = f"inbox/{shown(entry.id)}.md"
        others = [
            s.value for s in (State.BUILDING, State.DONE, State.FAILED) if self.store.coord.job_version(entry.id, s)
        ]
        if others:
            # Running it would put one id in two folders: leave the file where the user dropped it.
            return Refused(
                f"{name}: job {shown(entry.id)!r} already exists in {', '.join(others)}/; rename the file to run it"
            )
        try:
            job_id_for(Path(name))
            data = self.store.read_job(entry.id, State.INBOX)
            cwd = meta.get("add_dir")
            return parse_job(
                Path(name),
                data,
                engines=plugins.engine_names(),
                failure_classes=plugins.failure_classes(),
                default_cwd=Path(cwd) if cwd else None,
                job_id=entry.id,
            )
        except JobInvalid as exc:
            return "; ".join(exc.problems)
        except (OSError, ValueError) as exc:
            return f"{name}: cannot read: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        except Exception as exc:  # whatever a hostile file does to a parser, the runner goes on
            return f"{name}: cannot be parsed: {type(exc).__name__}"

    def _start(self, cand: Candidate) -> str:
        """Try to start ``cand``: ``started``, ``busy`` (wait for it), ``budget`` or ``rejected``."""
        job_id = cand.entry.id
        job_lock = self.store.coord.try_lock("job:" + job_id)
        if job_lock is None:
            return "busy"
        if isinstance(cand.error, Refused):
            job_lock.release()
            if job_id not in self._refused:
                self._refused.add(job_id)
                self.journal.say(None, cand.error.reason)
            return "refused"
        if cand.error is not None:
            self._reject(job_id, cand.error, job_lock)
            return "rejected"
        job = cand.job
        assert job is not None
        engine, why = self._choose_engine(job)
        if engine is None:
            if why in ("busy", "budget"):
                job_lock.release()
                return why
            self._reject(job_id, why or "no engine", job_lock)
            return "rejected"
        locks: list[Lock] = [job_lock]
        names = [
            n for n in (job.lock and "lock:" + job.lock, host_lock(plugins.work_lock(job.cwd, job.isolation))) if n
        ]
        if engine in self.probing:
            names.append("probe:" + engine)  # one job at a time, across runners, until the limit is over
        for name in names:
            held = self.store.coord.try_lock(name)
            if held is None:
                for lock in locks:
                    lock.release()
                return "busy"
            locks.append(held)
        if not self.store.claim(job_id):
            for lock in locks:
                lock.release()
            return "busy"
        attempt = Attempt(self, job, engine, locks)
        thread = threading.Thread(target=attempt.run, name=f"aq-{job_id}", daemon=True)
        with self._lock:
            self.running[job_id] = (thread, attempt)
        thread.start()
        return "started"

    def _choose_engine(self, job: Job) -> tuple[str | None, str | None]:
        """Return (the engine to run ``job`` on now, None), or (None, why not).

        Why not is ``busy`` (its engines are paused or probing: wait), ``budget`` (today's budget of
        each usable engine is spent) or a one-line reason it can never run here.
        """
        installed = plugins.installed_engines()
        usable = []
        budget_only = True
        for name in job.engines:
            item = installed.get(name)
            if item is None:
                continue
            engine = item.engine
            if not engine.available(self.config.engine_bins.get(name)):
                continue  # its executable is not installed here: the next engine of the list runs it
            usable.append(name)
            if name in self.pauses:
                budget_only = False
                continue
            if self.config.budgets:
                block = limits.budget_block(self.config, self._spend, name)
                if block:
                    self._budget_note(name, block)
                    continue
            return name, None
        if not usable:
            names = ", ".join(job.engines)
            return None, f"engine: {names}: not installed here (no plugin, or no executable: see aq engines)"
        return None, "budget" if budget_only else "busy"

    def _budget_note(self, engine: str, why: str) -> None:
        key = (engine, limits.day_start(time.time()))
        if key not in self._budget_noted:
            self._budget_noted.add(key)
            self.journal.say(None, f"budget: {why}; no new {engine} job starts until tomorrow")

    def _refresh_spend(self, now: float) -> None:
        since = limits.day_start(now)
        metas = (self.store.read_meta(e.id) for e in self.store.list())
        self._spend = limits.spend_since(metas, since)
        self._spend_at = time.monotonic()

    def _end_pauses(self, now: float) -> None:
        for pause in limits.expired_pauses(self.store, now):
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

    def job_done(self, job_id: str, state: State) -> None:
        """A job reached done/ or failed/: journal its status row, and tell the notifiers."""
        from aq_core.records import note_finished
        from aq_core.status import job_row

        with contextlib.suppress(Exception):  # a cache entry is a convenience, never a reason to fail
            note_finished(self.store, job_id, state, job_row(job_id, state, self.store.read_meta(job_id)))
        send_job_finished(self.store, self.notifier, job_id, state)

    def _reject(self, job_id: str, reason: str, job_lock: Lock) -> None:
        """Fail an invalid job file for good, keeping the file (in ``failed/``) and the reason."""
        try:
            if self.store.claim(job_id):
                # A name no meta file can have still moves to failed/, which says it is invalid.
                with contextlib.suppress(OSError):
                    self.store.append_meta(
                        job_id, {"result": "invalid", "error": reason, "finished": round(time.time(), 3)}
                    )
                self.store.move(job_id, State.BUILDING, State.FAILED)
                self.journal.say(None, f"{shown(job_id)}: invalid, moved to failed/: {reason}")
                with contextlib.suppress(Exception):
                    self.job_done(job_id, State.FAILED)
        finally:
            job_lock.release()
            self._parsed.pop(job_id, None)

    # -- stopping -----------------------------------------------------------------------------

    def _install_signals(self) -> dict[int, object]:
        previous: dict[int, object] = {}
        if threading.current_thread() is not threading.main_thread():
            return previous

        def handler(signum: int, frame: object) -> None:
            if not self.stopping.is_set():
                self.stopping.set()
                self.wake.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
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
        for thread, _ in attempts:
            thread.join()

    def job_finished(self) -> None:
        self.wake.set()


def run(store: Store, workers: int = 1, once: bool = False) -> int:
    if workers < 1:
        raise AqError("--workers must be at least 1")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
    return Runner(store, workers=workers, once=once).run()

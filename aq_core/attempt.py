"""One attempt of one job: checkpoint, spawn the engine, supervise it; ``attempt_end`` finishes it."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from threading import Event
from typing import Protocol

from aq_core import plugins, sandbox, spawn, transitions
from aq_core.attempt_end import AttemptEnd, spent_on
from aq_core.checkpoint import CheckpointContext
from aq_core.config import QueueConfig
from aq_core.engine import LaunchContext, Outcome
from aq_core.errors import AqError
from aq_core.job import Job
from aq_core.journal import Journal
from aq_core.meta import Meta
from aq_core.notifications import Notifier
from aq_core.procs import start_time
from aq_core.stall import StallWatch
from aq_core.store import Lock, Store
from aq_core.supervise import (
    STOP_GRACE,
    end_group,
    group_gone,
    is_file,
    open_pidfd,
    send_prompt,
    start_with_shell,
    started_marker,
    wait_exit,
)

CANCEL_CHECK = 0.5
_COMMIT = re.compile(r"[0-9a-f]{7,64}")

__all__ = ["STOP_GRACE", "Attempt", "Host", "claim_lines", "end_group", "group_gone", "started_marker"]


class _Unstarted(Exception):
    """The engine could not be started (the message says why): no attempt is counted."""


class Host(Protocol):
    """What an attempt needs of the runner that started it."""

    store: Store
    journal: Journal
    config: QueueConfig
    notifier: Notifier
    claim_meta: dict
    stopping: Event

    def attempt_ended(self, engine: str, cls: str, cost: float | None) -> None: ...
    def notify_finished(self, job_id: str, state: object, pr: str | None | bool = True) -> None: ...
    def job_finished(self) -> None: ...


def claim_lines(runner: Host, job: Job) -> dict[str, object]:
    """The first meta lines of a claimed job: when and by which runner, where it runs."""
    return {"claimed": round(time.time(), 3), **runner.claim_meta, "cwd": str(job.cwd), "isolation": job.isolation}


class Attempt(AttemptEnd):
    """Runs on a worker thread; everything it learns goes to meta before the job moves."""

    def __init__(self, runner: Host, job: Job, engine: str, locks: list[Lock], lines: dict[str, object]) -> None:
        self.runner = runner
        self.store = runner.store
        self.journal = runner.journal
        self.job = job
        self.engine = engine
        self.locks = locks
        self.say: Callable[[str], None] = runner.journal.for_job(job.id)
        self.proc: spawn.Agent | subprocess.Popen | None = None
        self.unrecorded: dict[str, object] = {}
        self.claim_lines = lines  # ``claim_lines``, given to ``transitions.claim``
        self.lease_lost = threading.Event()
        self.prepared = False
        self.ended = threading.Event()  # set once the attempt is over and its locks are released
        self.bwrap: str | None = None  # the sandbox's bubblewrap, for a ``sandbox: true`` job

    def lose_lease(self) -> None:
        """The store no longer holds this job for us: stop the agent; another runner recovers it."""
        self.lease_lost.set()

    def checkpoint_ctx(self, workdir: Path, result: str | None, meta: Meta | None = None) -> CheckpointContext:
        meta = meta if meta is not None else self.store.read_meta(self.job.id)
        return CheckpointContext(
            job_id=self.job.id,
            workdir=workdir,
            result=result,
            meta=meta.last,
            isolation=self.job.isolation,
            protected=self.runner.config.protected_branches,
            log=self.say,
        )

    def parent_commit(self) -> str | None:
        """The checkpoint of the one job this job waits for (``after:``), to build on; None when it
        waits for none or several, or that job left no checkpoint."""
        if len(self.job.after) != 1:
            return None
        commit = self.store.read_meta(self.job.after[0]).get("wip_commit")
        return commit if commit and _COMMIT.fullmatch(commit) else None

    # -- the attempt ---------------------------------------------------------------------------

    def run(self) -> None:
        self.journal.hold(self.job.id)
        try:
            self._run()
        except Exception as exc:  # a plugin's bug must not take the runner down or strand the job
            self.internal_error(exc)
        finally:
            try:
                self.journal.release(self.job.id)
                for lock in reversed(self.locks):
                    lock.release()
            finally:  # whatever happened, the runner must see this attempt over (its worker is reused)
                self.ended.set()
                self.runner.job_finished()

    def notify(self, job_id: str, state: object) -> None:
        """The job reached done/ or failed/: tell the runner's notifiers (its ``pr:`` key is known here)."""
        self.runner.notify_finished(job_id, state, getattr(self.job, "pr", None))

    def _run(self) -> None:
        job, store = self.job, self.store
        meta = store.read_meta(job.id)
        number = meta.integer("attempts") + 1
        transitions.note_claim(store, job.id, self.claim_lines)
        if meta.get("cancel_requested") == "1":
            self.fail_unstarted("cancelled", "cancelled before it started")
            return
        if not job.cwd.is_dir():
            self.fail_unstarted("invalid", f"cwd: {str(job.cwd)!r}: no such directory")
            return
        budget = None
        if job.max_cost_usd is not None:
            spent = spent_on(meta.runs())
            budget = round(job.max_cost_usd - (spent or 0.0), 6)
            if budget <= 0:
                self.fail_unstarted("budget_exceeded", f"max_cost_usd ${job.max_cost_usd:.2f} already spent")
                return
        bwrap = None
        if job.sandbox if job.sandbox is not None else self.runner.config.sandbox:
            # Checked before anything is prepared: a job that cannot be sandboxed never runs.
            bwrap, why = sandbox.ready()
            self.bwrap = bwrap
            if bwrap is None:
                self.fail_unstarted("sandbox_unavailable", why)
                return
        checkpoint = plugins.checkpoint(
            "prepare",
            replace(self.checkpoint_ctx(job.cwd, None, meta), base_commit=self.parent_commit()),
            settings=self.runner.config.plugins,
        )
        self.prepared = bool(checkpoint)  # a plugin took the work tree: its ``finish`` stage has work to do
        if checkpoint:
            store.append_meta(job.id, checkpoint, durable=False)  # flushed with the attempt's record
        if checkpoint.get("wip_error"):
            # The work tree could not be prepared safely (e.g. no worktree): running the engine
            # anyway could put the job's work into the user's checkout.
            self.fail_unstarted("checkpoint_failed", f"wip: {checkpoint['wip_error']}")
            return
        workdir = Path(checkpoint.get("workdir") or job.cwd)

        engine = plugins.get_engine(self.engine)
        prompt_file = store.files.tmp_path(f"{job.id}.{number}.prompt")
        log_path = store.files.log_path(job.id, number)
        ctx = LaunchContext(
            job=job,
            attempt=number,
            executable=engine.resolve(self.runner.config.engine_bins.get(self.engine)),
            workdir=workdir,
            prompt_file=prompt_file,
            session_id=resumable_session(meta, self.engine) if engine.resumes_sessions else None,
            max_cost_usd=budget,
            log_path=log_path,
            settings=plugins.settings(self.engine, self.runner.config),
        )
        try:
            spec = plugins.launch(self.engine, ctx)
        except AqError as exc:
            self.commit(workdir, "invalid")
            self.fail_unstarted("invalid", str(exc))
            return

        extra = {**spec.env, "AQ_JOB_ID": job.id, "AQ_ATTEMPT": str(number), "AQ_ROOT": str(store.files.root)}
        # Built from the bytes the process started with: no decoding and encoding again per variable.
        env = environ_bytes()
        env.update((os.fsencode(k), os.fsencode(v)) for k, v in extra.items())
        prompt = spec.prompt_text if spec.prompt_text is not None else job.prompt
        if spec.prompt == "file":
            store.files.write_private(prompt_file, prompt.encode("utf-8"))
        search = extra.get("PATH", os.environ.get("PATH"))
        program = find_program(spec.argv[0], search) if spec.argv else None
        if program is None:
            self._not_started(
                workdir, prompt_file, None, f"engine {self.engine}: cannot start {spec.argv[:1]!r}: not found"
            )
            return
        argv, tmpdir = [program, *spec.argv[1:]], None
        if bwrap is not None:
            tmpdir = sandbox.make_tmpdir(store.files.tmp_path(""), job.id, number)
            argv = sandbox.wrap(
                bwrap, argv, workdir, tmpdir, engine.state_dirs, log_path, [*spec.argv, *spec.env.values()]
            )
        # The prompt goes through a pipe of our own, written without a thread when it fits (send_prompt).
        stdin_r, stdin_w = os.pipe() if spec.prompt == "stdin" else (None, None)
        started = time.time()
        try:
            self.proc = proc = self._start(argv, env, workdir, stdin_r, log_path, number, spec.argv[0])
        except _Unstarted as exc:
            if stdin_r is not None:
                os.close(stdin_r)
                os.close(stdin_w)  # type: ignore[arg-type]
            self._not_started(workdir, prompt_file, tmpdir, str(exc))
            return
        if stdin_w is not None:
            os.close(stdin_r)  # type: ignore[arg-type]
            send_prompt(stdin_w, prompt.encode("utf-8"))
        pidfd = open_pidfd(proc.pid)
        try:
            written = prompt_file if spec.prompt == "file" else None  # the only prompt file to remove
            self._attempt(proc, pidfd, number, workdir, log_path, written, started, tmpdir)
        finally:
            if pidfd is not None:
                os.close(pidfd)

    def _start(
        self,
        argv: list[str],
        env: dict[bytes, bytes],
        workdir: Path,
        stdin: int | None,
        log: Path,
        number: int,
        name: str,
    ) -> spawn.Agent | subprocess.Popen:
        """Start the engine in its own session (timeouts and stops end every descendant), its output
        appended to ``log``; the child leaves the evidence of its start itself, just before it becomes
        the engine, so that if the runner dies at any instant after the fork recovery still knows.
        Raises ``_Unstarted`` (the reason, naming the engine's program as the job gave it: ``name``)
        when it could not start."""
        if spawn.available():
            # The evidence is the log, created by the child: one left by an older aq (made before its
            # fork, no start followed) goes first. Symlinks are left alone: the child never opens one.
            if is_file(log):
                os.unlink(log)
            try:
                return spawn.spawn(argv, env, workdir, stdin, log)
            except OSError as exc:
                # No start happened: the log the child made must not make a later recovery count one
                # (none can look before this: the job's lock is held through the attempt).
                if is_file(log):
                    os.unlink(log)
                elif os.path.islink(log):
                    raise _Unstarted(f"logs/{log.name}: cannot be written ({exc.strerror})") from None
                raise _Unstarted(f"engine {self.engine}: cannot start {name!r}: {exc.strerror}") from None
        try:
            return start_with_shell(self.store, self.journal, self.job.id, argv, env, workdir, stdin, log, number)
        except OSError as exc:
            raise _Unstarted(
                str(exc) if exc.errno is None else f"engine {self.engine}: cannot start {name!r}: {exc.strerror}"
            ) from None

    def _attempt(
        self,
        proc: spawn.Agent | subprocess.Popen,
        pidfd: int | None,
        number: int,
        workdir: Path,
        log_path: Path,
        prompt_file: Path | None,
        started: float,
        tmpdir: Path | None,
    ) -> None:
        """The engine runs: record it, supervise it, then finish the attempt (``AttemptEnd.finish``)."""
        job, store = self.job, self.store
        # Until it is in meta, an internal error (the store away) still counts the started attempt.
        self.unrecorded = {"attempt": number, "attempts": number, "agent_pid": proc.pid}
        record = {
            "attempt": number,
            "attempts": number,
            "engine": self.engine,
            "started": round(started, 3),
            "agent_pid": proc.pid,
            "agent_pidstart": start_time(proc.pid),
            "workdir": str(workdir) if workdir != job.cwd else None,
        }
        # The agent runs on meanwhile; a store away for half a lease gives the job up (``lease_lost``).
        self.while_store_away(lambda: store.append_meta(job.id, record), "the attempt's start")
        self.unrecorded = {}
        self.say(f"attempt {number} started on {self.engine} (agent pid {proc.pid})")

        stall = StallWatch(log_path, job.stall_timeout, time.monotonic()) if job.stall_timeout else None
        try:
            ended_by = self._supervise(proc, pidfd, started, stall)
        finally:
            if stall is not None:
                stall.close()
            if tmpdir is not None:
                shutil.rmtree(tmpdir, ignore_errors=True)
        finished = time.time()
        meta = store.read_meta(job.id)  # read once: cancel, usage, the checkpoint and the decision use it
        if ended_by == "exit" and meta.get("cancel_requested") == "1":
            ended_by = "cancel"  # `aq cancel` asks in meta first, then ends the group
        if prompt_file is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(prompt_file)
        outcome = Outcome(
            exit_code=proc.returncode,
            timed_out=ended_by in ("timeout", "stalled"),
            log_path=log_path,
            finished_at=finished,
        )
        self.finish(number, workdir, outcome, ended_by, started, finished, meta)

    def _supervise(
        self, proc: spawn.Agent | subprocess.Popen, pidfd: int | None, started: float, stall: StallWatch | None
    ) -> str:
        """Wait for the engine; return ``exit``, ``timeout``, ``stalled``, ``stop``, ``lost`` or ``cancel``."""
        job = self.job
        deadline = started + job.timeout if job.timeout else None
        meta_version = self.store.coord.meta_version(job.id)
        next_check = time.monotonic() + CANCEL_CHECK
        while True:
            if wait_exit(proc, pidfd, 0.05):
                # The leader is gone; descendants it left behind must not outlive the attempt.
                if not group_gone(proc.pid):
                    end_group(proc, 1.0)
                return "exit"
            if self.runner.stopping.is_set():
                end_group(proc, min(job.grace, STOP_GRACE))
                return "stop"
            if self.lease_lost.is_set():
                self.say("lease lost (the store could not be reached): stopping the agent; another runner recovers it")
                end_group(proc, min(job.grace, STOP_GRACE))
                return "lost"
            if deadline is not None and time.time() >= deadline:
                self.say(f"timeout after {job.timeout:g}s: TERM to the process group, KILL after {job.grace:g}s")
                end_group(proc, job.grace)
                return "timeout"
            if stall is not None and stall.stalled(time.monotonic()):
                self.say(f"stalled: no output for {job.stall_timeout:g}s: TERM to the group, KILL after {job.grace:g}s")
                end_group(proc, job.grace)
                return "stalled"
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + CANCEL_CHECK
                version = self.store.coord.meta_version(job.id)
                if version != meta_version:
                    meta_version = version
                    if self.store.read_meta(job.id).get("cancel_requested") == "1":
                        end_group(proc, min(job.grace, STOP_GRACE))
                        return "cancel"

    def _not_started(self, workdir: Path, prompt_file: Path, tmpdir: Path | None, reason: str) -> None:
        """Undo what was made for an agent that never started, and fail its job as invalid."""
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            prompt_file.unlink()
        self.commit(workdir, "invalid")
        self.fail_unstarted("invalid", reason)

    def fail_unstarted(self, result: str, reason: str) -> None:
        """End a claimed job whose engine never started (no attempt is counted)."""
        transitions.fail_unstarted(self.store, self.journal, self.job.id, result, reason, notify=self.notify)


_FOUND: dict[tuple[str, str | None], tuple[float, str]] = {}
FOUND_FOR = 5.0  # seconds a program found on PATH is taken from memory (after checking it is still there)


def find_program(name: str, path: str | None) -> str | None:
    """``shutil.which(name, path=path)``, remembered for a few seconds: a queue of short jobs starts
    the same program again and again, and each search is a ``stat`` per folder of PATH."""
    if os.sep in name:
        return shutil.which(name, path=path)  # a path: no search to save
    key, now = (name, path), time.monotonic()
    hit = _FOUND.get(key)
    if hit is not None and now - hit[0] < FOUND_FOR and os.access(hit[1], os.X_OK) and not os.path.isdir(hit[1]):
        return hit[1]
    found = shutil.which(name, path=path)
    if found is not None:
        if len(_FOUND) > 256:
            _FOUND.clear()
        _FOUND[key] = (now, found)
    return found


def environ_bytes() -> dict[bytes, bytes]:
    """A copy of the process's environment as bytes (what ``os.environb`` holds), made in C where the
    interpreter keeps it as such: iterating ``os.environb`` is a Python call per variable."""
    data = getattr(os.environb, "_data", None)
    return dict(data) if isinstance(data, dict) else dict(os.environb)


RESUMABLE = ("usage_limit", "rate_limited", "timeout", "stalled", "crash", "stopped", "orphaned")


def resumable_session(meta: Meta, engine: str) -> str | None:
    """The engine session the next attempt continues: the last one, if it was this engine's and the
    attempt was cut short (a limit, a timeout, a crash, a stop); otherwise a new session."""
    runs = meta.runs()
    if not runs:
        return None
    last = runs[-1]
    session = meta.get("session_id")
    if not session or last.get("engine") != engine or last.get("result") not in RESUMABLE:
        return None
    return session

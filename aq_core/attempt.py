"""One attempt of one job: checkpoint, spawn the engine, supervise it, verify, record, move."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from aq_core import limits, plugins, pricing
from aq_core.engine import LIMIT_CLASSES, Failure, LaunchContext, Outcome
from aq_core.errors import AqError
from aq_core.job import Job
from aq_core.meta import Meta, finite
from aq_core.procs import signal_group, start_time
from aq_core.reset_time import format_reset
from aq_core.retry import decide
from aq_core.store import Lock, State, Store

if TYPE_CHECKING:
    from aq_core.runner import Runner

STOP_GRACE = 3.0  # a stopping runner must exit within seconds, whatever the job's grace
CANCEL_CHECK = 0.5


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def end_group(proc: subprocess.Popen, grace: float) -> None:
    """TERM the whole process group, wait up to ``grace`` for every member, then KILL the rest."""
    pgid = proc.pid
    signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.05)
        if proc.returncode is not None and group_gone(pgid):
            return
    signal_group(pgid, signal.SIGKILL)
    proc.wait()


class Attempt:
    """Runs on a worker thread; everything it learns goes to meta before the job moves."""

    def __init__(self, runner: Runner, job: Job, engine: str, locks: list[Lock]) -> None:
        self.runner = runner
        self.store = runner.store
        self.job = job
        self.engine = engine
        self.locks = locks
        self.say = runner.journal.for_job(job.id)
        self.proc: subprocess.Popen | None = None
        self.unrecorded: dict[str, object] = {}
        self.lease_lost = threading.Event()

    def lose_lease(self) -> None:
        """The store no longer holds this job for us: stop the agent; another runner recovers it."""
        self.lease_lost.set()

    # -- the attempt ---------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # a plugin's bug must not take the runner down or strand the job
            self._internal_error(exc)
        finally:
            for lock in reversed(self.locks):
                lock.release()
            self.runner.job_finished()

    def _run(self) -> None:
        job, store = self.job, self.store
        meta = store.read_meta(job.id)
        number = meta.integer("attempts") + 1
        store.append_meta(
            job.id,
            {
                "claimed": round(time.time(), 3),
                **self.runner.claim_meta,
                "cwd": str(job.cwd),
                "isolation": job.isolation,
            },
        )
        if meta.get("cancel_requested") == "1":
            self._finish_without_attempt("cancelled", "cancelled before it started")
            return
        if not job.cwd.is_dir():
            self._finish_without_attempt("invalid", f"cwd: {str(job.cwd)!r}: no such directory")
            return
        budget = None
        if job.max_cost_usd is not None:
            spent = _spent(meta.runs())
            budget = round(job.max_cost_usd - (spent or 0.0), 6)
            if budget <= 0:
                self._finish_without_attempt("budget_exceeded", f"max_cost_usd ${job.max_cost_usd:.2f} already spent")
                return
        checkpoint = plugins.checkpoint(
            "prepare", job.id, job.cwd, None, meta.last, job.isolation, self.runner.config.protected_branches, self.say
        )
        if checkpoint:
            store.append_meta(job.id, checkpoint)
        if checkpoint.get("wip_error"):
            # The work tree could not be prepared safely (e.g. no worktree): running the engine
            # anyway could put the job's work into the user's checkout.
            self._finish_without_attempt("checkpoint_failed", f"wip: {checkpoint['wip_error']}")
            return
        workdir = Path(checkpoint.get("workdir") or job.cwd)

        engine = plugins.get_engine(self.engine)
        prompt_file = store.files.tmp_path(f"{job.id}.{number}.prompt")
        ctx = LaunchContext(
            job=job,
            attempt=number,
            executable=engine.resolve(self.runner.config.engine_bins.get(self.engine)),
            workdir=workdir,
            prompt_file=prompt_file,
            session_id=_resumable_session(meta, self.engine) if engine.resumes_sessions else None,
            max_cost_usd=budget,
            log_path=store.files.log_path(job.id, number),
        )
        try:
            spec = plugins.launch(self.engine, ctx)
        except AqError as exc:
            self._commit(workdir, "invalid")
            self._finish_without_attempt("invalid", str(exc))
            return

        log_path = store.files.log_path(job.id, number)
        env = dict(os.environ)
        env.update(spec.env)
        env.update({"AQ_JOB_ID": job.id, "AQ_ATTEMPT": str(number), "AQ_ROOT": str(store.files.root)})
        prompt = spec.prompt_text if spec.prompt_text is not None else job.prompt
        if spec.prompt == "file":
            store.files.write_private(prompt_file, prompt.encode("utf-8"))
        program = shutil.which(spec.argv[0], path=env.get("PATH")) if spec.argv else None
        if program is None:
            with contextlib.suppress(FileNotFoundError):
                prompt_file.unlink()
            self._commit(workdir, "invalid")
            self._finish_without_attempt("invalid", f"engine {self.engine}: cannot start {spec.argv[:1]!r}: not found")
            return
        log_fd = store.files.open_log(log_path)
        # The started marker is written by the child itself, just before it becomes the engine: if
        # the runner dies at any instant after the fork, recovery still knows the attempt began.
        marker = started_marker(store, job.id, number)
        os.close(store.files.open_log(marker))  # created 0600 by us; the child only appends its pid
        started = time.time()
        try:
            self.proc = subprocess.Popen(
                ["/bin/sh", "-c", 'echo $$ >>"$0" && exec "$@"', str(marker), program, *spec.argv[1:]],
                cwd=workdir,
                env=env,
                stdin=subprocess.PIPE if spec.prompt == "stdin" else subprocess.DEVNULL,
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: timeouts and stops end every descendant
                close_fds=True,
            )
        except OSError as exc:
            os.close(log_fd)
            with contextlib.suppress(FileNotFoundError):
                prompt_file.unlink()
            self._commit(workdir, "invalid")
            self._finish_without_attempt(
                "invalid", f"engine {self.engine}: cannot start {spec.argv[0]!r}: {exc.strerror}"
            )
            return
        os.close(log_fd)
        proc = self.proc
        # Until it is in meta, an internal error (the store away) still counts the started attempt.
        self.unrecorded = {"attempt": number, "attempts": number, "agent_pid": proc.pid}
        store.append_meta(
            job.id,
            {
                "attempt": number,
                "attempts": number,
                "engine": self.engine,
                "started": round(started, 3),
                "agent_pid": proc.pid,
                "agent_pidstart": start_time(proc.pid),
                "workdir": str(workdir) if workdir != job.cwd else None,
            },
        )
        self.unrecorded = {}
        self.say(f"attempt {number} started on {self.engine} (agent pid {proc.pid})")
        if spec.prompt == "stdin":
            threading.Thread(target=_feed, args=(proc, prompt.encode("utf-8")), daemon=True).start()

        ended_by = self._supervise(proc, started)
        finished = time.time()
        if ended_by == "exit" and store.read_meta(job.id).get("cancel_requested") == "1":
            ended_by = "cancel"  # `aq cancel` asks in meta first, then ends the group
        with contextlib.suppress(FileNotFoundError):
            prompt_file.unlink()
        outcome = Outcome(
            exit_code=proc.returncode, timed_out=ended_by == "timeout", log_path=log_path, finished_at=finished
        )
        self._finish(number, workdir, outcome, ended_by, started, finished)

    def _internal_error(self, exc: Exception) -> None:
        """End the attempt as a crash: stop its engine, keep its work, and let the retry policy decide."""
        reason = f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        self.say(reason)
        try:
            if self.proc is not None and self.proc.returncode is None:
                end_group(self.proc, STOP_GRACE)
            if self.store.locate(self.job.id) is not State.BUILDING:
                return
            meta = self.store.read_meta(self.job.id)
            decision = decide(self.job.retry, "crash", meta.integer("retries"), time.time())
            self.store.append_meta(
                self.job.id, {**self.unrecorded, **decision.meta, "error": reason, "decision": decision.state}
            )
            state = State(decision.state)
            if self._move(state, f"{decision.meta['result']} after an internal error") and state is not State.INBOX:
                self.runner.job_done(self.job.id, state)
        except Exception as again:  # the store itself failed: recovery finishes it once we are gone
            self.say(f"could not record the internal error ({type(again).__name__}: {again}); recovery will")

    def _supervise(self, proc: subprocess.Popen, started: float) -> str:
        """Wait for the engine; return ``exit``, ``timeout``, ``stop`` or ``cancel``."""
        job = self.job
        deadline = started + job.timeout if job.timeout else None
        meta_version = self.store.coord.meta_version(job.id)
        next_check = time.monotonic() + CANCEL_CHECK
        while True:
            try:
                proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass
            else:
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
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + CANCEL_CHECK
                version = self.store.coord.meta_version(job.id)
                if version != meta_version:
                    meta_version = version
                    if self.store.read_meta(job.id).get("cancel_requested") == "1":
                        end_group(proc, min(job.grace, STOP_GRACE))
                        return "cancel"

    # -- after the engine ---------------------------------------------------------------------

    def _finish(
        self, number: int, workdir: Path, outcome: Outcome, ended_by: str, started: float, finished: float
    ) -> None:
        job, store = self.job, self.store
        if ended_by == "lost":
            # Not ours any more: keep the work on the wip branch, leave the bookkeeping to recovery.
            self._commit(workdir, "orphaned")
            return
        figures: dict[str, object] = {"exit": outcome.exit_code, "duration_s": round(finished - started, 3)}
        failure = None
        if ended_by == "stop":
            cls = "stopped"
        elif ended_by == "cancel":
            cls = "cancelled"
        else:
            failure = plugins.classify_failure(self.engine, outcome)
            cls = failure.cls
            if failure.reset_at:
                figures["reset_at"] = round(failure.reset_at, 3)
            if failure.detail and cls != "ok":
                figures["detail"] = failure.detail
            if cls == "ok" and job.verify:
                cls = self._verify(workdir, outcome.log_path, started)
        figures.update(self._usage(outcome.log_path, failure))
        figures.update(self._commit(workdir, cls))
        figures["finished"] = round(finished, 3)
        cost = figures.get("cost_usd")
        self.runner.attempt_ended(self.engine, cls, float(cost) if isinstance(cost, int | float) else None)

        if ended_by == "stop":
            store.append_meta(job.id, {**figures, "result": "stopped", "orphans": 0})
            self._move(State.INBOX, "stopped by the runner; back in inbox/ (no retry used)")
            return
        meta = store.read_meta(job.id)
        note = None
        if ended_by == "cancel":
            decision_state, result_meta = "failed", {"result": "cancelled"}
        elif cls in LIMIT_CLASSES:
            decision_state, result_meta, note = self._limit(cls, failure)
        else:
            limits.engine_succeeded(store, self.engine)
            decision = decide(job.retry, cls, meta.integer("retries"), finished)
            decision_state, result_meta = decision.state, decision.meta
            spent = _spent([*meta.runs()[:-1], figures])
            if job.max_cost_usd is not None and spent is not None and spent >= job.max_cost_usd and cls != "ok":
                decision_state, result_meta = "failed", {"result": "budget_exceeded", "last_failure": cls}
                note = f"budget_exceeded: ${spent:.2f} spent of max_cost_usd ${job.max_cost_usd:.2f}"
        store.append_meta(job.id, {**figures, "orphans": 0, **result_meta, "decision": decision_state})
        state = State(decision_state)
        result = result_meta["result"]
        if note is None and state is State.INBOX:
            wait = float(result_meta["next_eligible"]) - time.time()
            note = f"{cls}; retry {result_meta['retries']} of {job.retry.max} eligible in {max(0.0, wait):.0f}s"
        elif note is None:
            note = f"{result} ({figures['duration_s']}s, exit {outcome.exit_code})"
        if self._move(state, note) and state in (State.DONE, State.FAILED):
            if state is State.DONE:
                self._finish_checkpoint(workdir)
            self.runner.job_done(job.id, state)

    def _usage(self, log_path: Path, failure: Failure | None) -> dict[str, object]:
        """Return the attempt's usage figures for meta (own spend only, when totals are cumulative)."""
        job, meta = self.job, self.store.read_meta(self.job.id)
        usage = plugins.parse_usage(self.engine, log_path)
        figures: dict[str, object] = dict(usage.figures())
        if "model" not in figures and job.model:
            figures["model"] = job.model  # known, not guessed: it is what aq passed
        session = usage.session_id
        if session and usage.extra.get("session_cumulative"):
            # The engine's totals include earlier attempts of the same session: keep the running
            # totals, and record only this attempt's share as its figures.
            same = session == meta.get("session_id") and meta.get("engine") == self.engine
            for key in ("tokens_in", "tokens_out", "tokens_cached", "cost_usd"):
                value = figures.get(key)
                if value is None:
                    continue
                previous = meta.number(f"session_{key}") if same else None
                figures[f"session_{key}"] = value
                if previous is not None and value >= previous:
                    figures[key] = round(value - previous, 6) if key == "cost_usd" else int(value - previous)
        if failure is not None and failure.session_lost:
            figures["session_id"] = ""  # the engine lost it: the next attempt starts a new session
        elif session:
            figures["session_id"] = session
        estimate = pricing.estimate(figures) if self.runner.config.estimate_cost else None
        if estimate is not None:
            figures["cost_usd"] = estimate
            figures["estimated"] = "cost_usd"
            figures["pricing"] = pricing.VERSION
        return figures

    def _limit(self, cls: str, failure: Failure | None) -> tuple[str, dict[str, object], str]:
        """Pause the engine; put the job back (no retry spent) unless it asked to fail on limits."""
        pause = limits.pause_engine(
            self.store, self.runner.config, self.engine, cls, failure.reset_at if failure else None, self.job.id
        )
        until = format_reset(pause.until)
        self.runner.journal.say(None, f"engine {self.engine} paused until {until} ({cls}, hit by {self.job.id})")
        self.runner.notifier.send(
            "engine_paused", {"engine": self.engine, "until": pause.until, "reason": cls, "job": self.job.id}
        )
        on_limit = self.job.on_limit or self.runner.config.on_limit
        if on_limit == "fail":
            return "failed", {"result": cls, "last_failure": cls}, f"{cls} (on_limit: fail)"
        return "inbox", {"result": cls}, f"{cls}: back in inbox/, waiting for {self.engine} (no retry used)"

    def _verify(self, workdir: Path, log_path: Path, started: float) -> str:
        job = self.job
        remaining = None if not job.timeout else max(1.0, started + job.timeout - time.time())
        fd = self.store.files.open_log(log_path)
        try:
            os.write(fd, f"\naq: verify: running `{job.verify}`\n".encode())
            proc = subprocess.Popen(
                ["/bin/sh", "-c", job.verify or "true"],
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            os.close(fd)
        try:
            code = proc.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            end_group(proc, job.grace)
            self.say("verify: timed out")
            return "timeout"
        if not group_gone(proc.pid):
            end_group(proc, 1.0)
        if code != 0:
            self.say(f"verify failed (exit {code}): {job.verify}")
            return "verify_failed"
        return "ok"

    def _finish_checkpoint(self, workdir: Path) -> None:
        try:
            done = plugins.checkpoint(
                "finish",
                self.job.id,
                workdir,
                "ok",
                self.store.read_meta(self.job.id).last,
                self.job.isolation,
                self.runner.config.protected_branches,
                self.say,
            )
        except Exception as exc:
            self.say(f"wip: finish: {type(exc).__name__}: {exc}")
            return
        if done:
            self.store.append_meta(self.job.id, done)

    def _commit(self, workdir: Path, result: str) -> dict[str, str]:
        meta = self.store.read_meta(self.job.id)
        try:
            return plugins.checkpoint(
                "commit",
                self.job.id,
                workdir,
                result,
                meta.last,
                self.job.isolation,
                self.runner.config.protected_branches,
                self.say,
            )
        except Exception as exc:  # a checkpoint problem is reported, never fatal to the job's bookkeeping
            self.say(f"wip: checkpoint failed: {type(exc).__name__}: {exc}")
            return {}

    def _finish_without_attempt(self, result: str, reason: str) -> None:
        """End a claimed job whose engine never started (no attempt is counted)."""
        self.store.append_meta(
            self.job.id, {"result": result, "error": reason, "finished": round(time.time(), 3), "decision": "failed"}
        )
        if self._move(State.FAILED, f"{result}: {reason}"):
            self.runner.job_done(self.job.id, State.FAILED)

    def _move(self, state: State, note: str) -> bool:
        if not self.store.move(self.job.id, State.BUILDING, state):
            self.say("was no longer in building/ (moved by someone else); leaving it where it is")
            return False
        self.say(f"{state.value}: {note}")
        return True


def started_marker(store: Store, job_id: str, attempt: int) -> Path:
    """The file an attempt's process writes its pid to as it starts (see ``Attempt._run``)."""
    return store.files.log_path(job_id, attempt).with_suffix(".started")


def _feed(proc: subprocess.Popen, data: bytes) -> None:
    """Write the prompt to the engine's stdin and close it (an engine may exit without reading)."""
    stdin = proc.stdin
    if stdin is None:
        return
    with contextlib.suppress(BrokenPipeError, OSError, ValueError):
        stdin.write(data)
    with contextlib.suppress(BrokenPipeError, OSError, ValueError):
        stdin.close()


RESUMABLE = ("usage_limit", "rate_limited", "timeout", "crash", "stopped", "orphaned")


def _resumable_session(meta: Meta, engine: str) -> str | None:
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


def _spent(runs: list[dict]) -> float | None:
    """The cost of these attempts (None when none of them reported one)."""
    costs = []
    for run in runs:
        value = run.get("cost_usd")
        cost = float(value) if isinstance(value, int | float) else finite(value) if isinstance(value, str) else None
        if cost is not None:
            costs.append(cost)
    return sum(costs) if costs else None

"""One attempt of one job: checkpoint, spawn the engine, supervise it, verify, record, move."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from aq_core import plugins
from aq_core.engine import LaunchContext, Outcome
from aq_core.errors import AqError
from aq_core.job import Job
from aq_core.procs import signal_group, start_time
from aq_core.retry import decide
from aq_core.store import Lock, State, host_id

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

    # -- the attempt ---------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # never let one job take the runner down
            self.say(f"internal error, job left in building/ for recovery: {type(exc).__name__}: {exc}")
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
                "pid": self.runner.pid,
                "pidstart": self.runner.pidstart,
                "host": host_id(),
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
        prompt_file = store.root / "tmp" / f"{job.id}.{number}.prompt"
        ctx = LaunchContext(
            job=job,
            attempt=number,
            executable=engine.resolve(self.runner.config.engine_bins.get(self.engine)),
            workdir=workdir,
            prompt_file=prompt_file,
            session_id=meta.get("session_id") if engine.resumes_sessions else None,
            max_cost_usd=job.max_cost_usd,
            log_path=store.log_path(job.id, number),
        )
        try:
            spec = plugins.launch(self.engine, ctx)
        except AqError as exc:
            self._commit(workdir, "invalid")
            self._finish_without_attempt("invalid", str(exc))
            return

        log_path = store.log_path(job.id, number)
        env = dict(os.environ)
        env.update(spec.env)
        env.update({"AQ_JOB_ID": job.id, "AQ_ATTEMPT": str(number), "AQ_ROOT": str(store.root)})
        prompt = spec.prompt_text if spec.prompt_text is not None else job.prompt
        if spec.prompt == "file":
            store.write_private(prompt_file, prompt.encode("utf-8"))
        log_fd = store.open_log(log_path)
        started = time.time()
        try:
            self.proc = subprocess.Popen(
                spec.argv,
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

    def _supervise(self, proc: subprocess.Popen, started: float) -> str:
        """Wait for the engine; return ``exit``, ``timeout``, ``stop`` or ``cancel``."""
        job = self.job
        deadline = started + job.timeout if job.timeout else None
        meta_path = self.store.meta_path(job.id)
        meta_size = _size(meta_path)
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
            if deadline is not None and time.time() >= deadline:
                self.say(f"timeout after {job.timeout:g}s: TERM to the process group, KILL after {job.grace:g}s")
                end_group(proc, job.grace)
                return "timeout"
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + CANCEL_CHECK
                size = _size(meta_path)
                if size != meta_size:
                    meta_size = size
                    if self.store.read_meta(job.id).get("cancel_requested") == "1":
                        end_group(proc, min(job.grace, STOP_GRACE))
                        return "cancel"

    # -- after the engine ---------------------------------------------------------------------

    def _finish(
        self, number: int, workdir: Path, outcome: Outcome, ended_by: str, started: float, finished: float
    ) -> None:
        job, store = self.job, self.store
        figures: dict[str, object] = {"exit": outcome.exit_code, "duration_s": round(finished - started, 3)}
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
        usage = plugins.parse_usage(self.engine, outcome.log_path)
        figures.update(usage.figures())
        if "model" not in figures and job.model:
            figures["model"] = job.model  # known, not guessed: it is what aq passed
        if usage.session_id:
            figures["session_id"] = usage.session_id
        figures.update(self._commit(workdir, cls))
        figures["finished"] = round(finished, 3)

        if ended_by == "stop":
            store.append_meta(job.id, {**figures, "result": "stopped", "orphans": 0})
            self._move(State.INBOX, "stopped by the runner; back in inbox/ (no retry used)")
            return
        meta = store.read_meta(job.id)
        if ended_by == "cancel":
            decision_state, result_meta = "failed", {"result": "cancelled"}
        else:
            decision = decide(job.retry, cls, meta.integer("retries"), finished)
            decision_state, result_meta = decision.state, decision.meta
        store.append_meta(job.id, {**figures, "orphans": 0, **result_meta, "decision": decision_state})
        state = State(decision_state)
        result = result_meta["result"]
        if state is State.INBOX:
            wait = float(result_meta["next_eligible"]) - time.time()
            note = f"{cls}; retry {result_meta['retries']} of {job.retry.max} eligible in {max(0.0, wait):.0f}s"
        else:
            note = f"{result} ({figures['duration_s']}s, exit {outcome.exit_code})"
        self._move(state, note)

    def _verify(self, workdir: Path, log_path: Path, started: float) -> str:
        job = self.job
        remaining = None if not job.timeout else max(1.0, started + job.timeout - time.time())
        fd = self.store.open_log(log_path)
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
        self._move(State.FAILED, f"{result}: {reason}")

    def _move(self, state: State, note: str) -> None:
        if not self.store.move(self.job.id, State.BUILDING, state):
            self.say("was no longer in building/ (moved by someone else); leaving it where it is")
            return
        self.say(f"{state.value}: {note}")


def _feed(proc: subprocess.Popen, data: bytes) -> None:
    """Write the prompt to the engine's stdin and close it (an engine may exit without reading)."""
    stdin = proc.stdin
    if stdin is None:
        return
    with contextlib.suppress(BrokenPipeError, OSError, ValueError):
        stdin.write(data)
    with contextlib.suppress(BrokenPipeError, OSError, ValueError):
        stdin.close()


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return -1

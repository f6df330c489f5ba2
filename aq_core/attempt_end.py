"""After the engine: classify, verify, record usage and cost, checkpoint, decide and move the job."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from aq_core import decisions, limits, plugins, pricing, transitions
from aq_core.engine import CORE_FAILURE_CLASSES, Failure, Outcome
from aq_core.errors import StoreUnavailable
from aq_core.meta import finite
from aq_core.reset_time import format_reset
from aq_core.store import State
from aq_core.supervise import STOP_GRACE, end_group, run_verify

if TYPE_CHECKING:
    from collections.abc import Callable

    from aq_core.checkpoint import CheckpointContext
    from aq_core.job import Job
    from aq_core.journal import Journal
    from aq_core.meta import Meta
    from aq_core.store import Store

T = TypeVar("T")


class AttemptEnd:
    """The second half of ``aq_core.attempt.Attempt``: everything after the engine exits."""

    store: Store
    journal: Journal
    job: Job
    engine: str
    runner: Any
    proc: Any
    unrecorded: dict[str, object]  # the started attempt's count, until it is in meta
    bwrap: str | None
    prepared: bool  # the checkpoint's ``prepare`` stage was answered in this attempt
    lease_lost: Any  # threading.Event: set once the store no longer holds the job for this runner
    say: Callable[[str], None]

    def checkpoint_ctx(self, workdir: Path, result: str | None, meta: Meta | None = None) -> CheckpointContext:
        raise NotImplementedError

    def notify(self, job_id: str, state: object) -> None:
        raise NotImplementedError

    def finish(
        self,
        number: int,
        workdir: Path,
        outcome: Outcome,
        ended_by: str,
        started: float,
        finished: float,
        meta: Meta,
    ) -> None:
        """``meta`` is the job's meta as the engine ended (read once for everything below)."""
        job, store = self.job, self.store
        if ended_by == "lost":
            # Not ours any more: keep the work on the wip branch, leave the bookkeeping to recovery.
            self.commit(workdir, "orphaned", meta)
            return
        figures: dict[str, object] = {"exit": outcome.exit_code, "duration_s": round(finished - started, 3)}
        failure = None
        if ended_by == "stop":
            cls = "stopped"
        elif ended_by == "cancel":
            cls = "cancelled"
        else:
            failure = plugins.classify_failure(self.engine, outcome, plugins.settings(self.engine, self.runner.config))
            cls = failure.cls
            if ended_by == "stalled" and cls in (*CORE_FAILURE_CLASSES, "ok"):
                cls = "stalled"  # the engine's log names no cause of its own (such as a usage limit)
            if failure.reset_at:
                figures["reset_at"] = round(failure.reset_at, 3)
            if failure.detail and cls != "ok":
                figures["detail"] = failure.detail
            if cls == "ok" and job.verify:
                remaining = None if not job.timeout else max(1.0, started + job.timeout - time.time())
                cls = run_verify(
                    store,
                    job.verify,
                    workdir,
                    outcome.log_path,
                    remaining,
                    job.grace,
                    self.say,
                    bwrap=self.bwrap,
                    job_id=job.id,
                )
        figures.update(self.usage(outcome.log_path, failure, meta))
        figures.update(self.commit(workdir, cls, meta))
        figures["finished"] = round(finished, 3)
        cost = figures.get("cost_usd")
        self.runner.attempt_ended(self.engine, cls, float(cost) if isinstance(cost, int | float) else None)
        figures["orphans"] = 0

        decision = decisions.after_attempt(
            decisions.AttemptEnd(
                cls=cls,
                now=finished,
                retry=job.retry,
                retries=meta.integer("retries"),
                on_limit=job.on_limit or self.runner.config.on_limit,
                max_cost_usd=job.max_cost_usd,
                spent=spent_on([*meta.runs()[:-1], figures]),
            )
        )
        if decision.pause:
            self.pause_engine(decision.pause, failure)
        elif cls not in ("stopped", "cancelled"):
            limits.engine_succeeded(store, self.engine)
        if cls == "stopped":
            transitions.stop(store, self.journal, job.id, {**figures, **decision.meta}, decision.note or "stopped")
            return
        note = decision.note
        if decision.pause and decision.state == "inbox":
            note = f"{cls}: back in inbox/, waiting for {self.engine} (no retry used)"
        elif note is None and decision.state == "inbox":
            wait = float(decision.meta["next_eligible"]) - time.time()
            note = f"{cls}; retry {decision.meta['retries']} of {job.retry.max} eligible in {max(0.0, wait):.0f}s"
        elif note is None:
            note = f"{decision.meta['result']} ({figures['duration_s']}s, exit {outcome.exit_code})"
        transitions.apply(
            store,
            self.journal,
            job.id,
            decision,
            figures,
            note,
            notify=self.notify,
            # ``finish`` cleans up what ``prepare`` made: when no plugin answered it, there is nothing.
            then=lambda state: self.finish_checkpoint(workdir) if state is State.DONE and self.prepared else None,
        )

    def internal_error(self, exc: Exception) -> None:
        """End the attempt as a crash: stop its engine, keep its work, and let the retry policy decide."""
        reason = f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        self.say(reason)

        def record() -> None:
            if self.store.locate(self.job.id) is not State.BUILDING:
                return
            meta = self.store.read_meta(self.job.id)
            decision = decisions.retry_decision(self.job.retry, "crash", meta.integer("retries"), time.time())
            note = f"{decision.meta['result']} after an internal error"
            transitions.apply(
                self.store,
                self.journal,
                self.job.id,
                decision,
                {**self.unrecorded, "error": reason},
                note,
                self.notify,
            )

        try:
            if self.proc is not None and self.proc.returncode is None:
                end_group(self.proc, STOP_GRACE)
            self.while_store_away(record, "the internal error")
        except Exception as again:  # the store itself failed: recovery finishes it once we are gone
            self.say(f"could not record the internal error ({type(again).__name__}: {again}); recovery will")

    def while_store_away(self, write: Callable[[], T], what: str) -> T:
        """Return ``write()``; while a shared store is away, wait for it as long as the job is still ours.

        Dropping the write instead would leave the job to recovery, which on another host cannot see
        this host's evidence that the agent started: a started attempt would go uncounted. Once the
        lease is lost the job is another runner's to recover, and the error is raised.
        """
        told = False
        while True:
            try:
                return write()
            except StoreUnavailable as exc:
                if self.lease_lost.is_set() or self.job.id in self.store.coord.renew([self.job.id]):
                    self.lease_lost.set()
                    raise
                if not told:
                    self.say(f"{exc}; waiting for it to record {what}")
                    told = True
                self.lease_lost.wait(1.0)

    def usage(self, log_path: Path, failure: Failure | None, meta: Meta) -> dict[str, object]:
        """Return the attempt's usage figures for meta (own spend only, when totals are cumulative)."""
        job = self.job
        usage = plugins.parse_usage(self.engine, log_path, plugins.settings(self.engine, self.runner.config))
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
        config = self.runner.config
        estimate = (
            pricing.for_engine(self.engine, figures, config.prices, usage.extra) if config.estimate_cost else None
        )
        if estimate is not None:
            figures["cost_usd"] = estimate.cost_usd
            figures["estimated"] = "cost_usd"
            figures["pricing"] = estimate.source
        return figures

    def pause_engine(self, cls: str, failure: Failure | None) -> None:
        """The engine hit a limit: pause it (every runner sees it) and tell the notifiers."""
        pause = limits.pause_engine(
            self.store, self.runner.config, self.engine, cls, failure.reset_at if failure else None, self.job.id
        )
        until = format_reset(pause.until)
        self.runner.journal.say(None, f"engine {self.engine} paused until {until} ({cls}, hit by {self.job.id})")
        self.runner.notifier.send(
            "engine_paused", {"engine": self.engine, "until": pause.until, "reason": cls, "job": self.job.id}
        )

    def finish_checkpoint(self, workdir: Path) -> None:
        try:
            done = plugins.checkpoint("finish", self.checkpoint_ctx(workdir, "ok"), settings=self.runner.config.plugins)
        except Exception as exc:
            self.say(f"wip: finish: {type(exc).__name__}: {exc}")
            return
        if done:
            self.store.append_meta(self.job.id, done)

    def commit(self, workdir: Path, result: str, meta: Meta | None = None) -> dict[str, str]:
        try:
            return plugins.checkpoint(
                "commit", self.checkpoint_ctx(workdir, result, meta), settings=self.runner.config.plugins
            )
        except Exception as exc:  # a checkpoint problem is reported, never fatal to the job's bookkeeping
            self.say(f"wip: checkpoint failed: {type(exc).__name__}: {exc}")
            return {}


def spent_on(runs: list[dict]) -> float | None:
    """The cost of these attempts (None when none of them reported one)."""
    costs = []
    for run in runs:
        value = run.get("cost_usd")
        cost = float(value) if isinstance(value, int | float) else finite(value) if isinstance(value, str) else None
        if cost is not None:
            costs.append(cost)
    return sum(costs) if costs else None

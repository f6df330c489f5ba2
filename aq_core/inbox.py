"""Reading ``inbox/`` for the runner: each waiting job as a ``decisions.Candidate``, oldest first.

Parsed job files are kept while their file is unchanged. On the way, a file that can never run is
failed (``transitions.invalid``), and a move out of inbox/ whose decision was written but whose
rename was not (``aq cancel`` killed) is finished (``transitions.replay``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aq_core import decisions, plugins, transitions
from aq_core.config import QueueConfig
from aq_core.errors import JobInvalid, shown
from aq_core.job import Job, job_id_for, parse_job
from aq_core.journal import Journal
from aq_core.meta import Meta
from aq_core.store import Entry, State, Store, host_lock
from aq_core.transitions import Notify


@dataclass(frozen=True)
class Refused:
    """An inbox file the runner leaves alone (its id is taken): said once, never run."""

    reason: str


class Inbox:
    """The runner's view of ``inbox/``; ``skip`` holds ids not to offer again in this round."""

    def __init__(self, store: Store, config: QueueConfig, journal: Journal, notify: Notify) -> None:
        self.store, self.config, self.journal, self.notify = store, config, journal, notify
        self.parsed: dict[str, tuple[object, Job | str | Refused]] = {}
        self.refused: set[str] = set()
        self.skip: set[str] = set()
        self.busy = False  # a job's lock was held elsewhere this round: look again soon
        self.work_locks: dict[tuple[Path, str], str | None] = {}

    def round(self, running: set[str]) -> _Replayable:
        """Start a round of picks: the candidates, produced lazily, minus ``running`` and ``skip``."""
        self.skip = set(running)
        self.busy = False
        self.work_locks = {}
        return _Replayable(self.candidates(), self.skip)

    def job(self, job_id: str) -> Job | None:
        parsed = self.parsed.get(job_id)
        return parsed[1] if parsed is not None and isinstance(parsed[1], Job) else None

    def candidates(self) -> Iterator[decisions.Candidate]:
        """The waiting jobs as ``decisions.Candidate`` values, oldest first, read as they are asked for.

        Files that can never run are failed on the way (``transitions.invalid``); a move whose
        decision was written but not done (``aq cancel`` killed) is finished.
        """
        for entry in self.store.list(State.INBOX):
            if entry.id in self.skip:
                continue
            meta = self.store.read_meta(entry.id)
            parsed = self._parsed_job(entry, meta)
            if parsed is None:
                continue
            if isinstance(parsed, Refused):
                if entry.id not in self.refused:
                    self.refused.add(entry.id)
                    self.journal.say(None, parsed.reason)
                continue
            if transitions.pending(meta, State.INBOX) in (State.DONE, State.FAILED):
                self.replay(entry.id)
                continue
            usable = self._usable(parsed) if isinstance(parsed, Job) else ()
            if isinstance(parsed, str) or not usable:
                reason = parsed if isinstance(parsed, str) else _not_installed(parsed)
                self.reject(entry.id, reason)
                continue
            key = (parsed.cwd, parsed.isolation)
            if key not in self.work_locks:
                self.work_locks[key] = host_lock(plugins.work_lock(parsed.cwd, parsed.isolation))
            names = (parsed.lock and "lock:" + parsed.lock, self.work_locks[key])
            yield decisions.Candidate(
                id=entry.id,
                added=entry.queued,
                engines=usable,
                locks=tuple(n for n in names if n),
                next_eligible=meta.number("next_eligible"),
            )

    def _usable(self, job: Job) -> tuple[str, ...]:
        """The job's engines that can run here: installed, with their executable found."""
        installed = plugins.installed_engines()
        usable = []
        for name in job.engines:
            item = installed.get(name)
            if item is not None and item.engine.available(self.config.engine_bins.get(name)):
                usable.append(name)
        return tuple(usable)

    def _parsed_job(self, entry: Entry, meta: Meta) -> Job | str | Refused | None:
        key = self.store.coord.job_version(entry.id, State.INBOX)
        if key is None:
            return None
        cached = self.parsed.get(entry.id)
        if cached and cached[0] == key:
            return cached[1]
        parsed = self._parse(entry, meta)
        self.parsed[entry.id] = (key, parsed)
        return parsed

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

    def reject(self, job_id: str, reason: str) -> None:
        """Fail an invalid job file for good, keeping the file (in ``failed/``) and the reason."""
        job_lock = self.store.coord.try_lock("job:" + job_id)
        if job_lock is None:
            self.busy = True
            return
        try:
            with contextlib.suppress(Exception):  # a notifier's trouble must not stop the queue
                transitions.invalid(self.store, self.journal, job_id, reason, notify=self.notify)
        finally:
            job_lock.release()
            self.parsed.pop(job_id, None)

    def replay(self, job_id: str) -> None:
        """Finish a move out of inbox/ whose decision was written but whose rename was not."""
        job_lock = self.store.coord.try_lock("job:" + job_id)
        if job_lock is None:
            self.busy = True
            return
        try:
            meta = self.store.read_meta(job_id)
            dst = transitions.pending(meta, State.INBOX)
            if dst is not None and dst is not State.INBOX and self.store.locate(job_id) is State.INBOX:
                said = f"recovered: a move to {dst.value}/ was decided but not done; moved to {dst.value}/"
                transitions.replay(self.store, self.journal, job_id, State.INBOX, dst, said, self.notify)
        finally:
            job_lock.release()


class _Replayable:
    """A lazily produced sequence that can be iterated again (from what it produced so far), minus
    the ids in ``skip``: ``decisions.choose`` is asked once per free worker over the same queue."""

    def __init__(self, source: Iterator[decisions.Candidate], skip: set[str]) -> None:
        self._source, self._skip, self._seen = source, skip, []

    def __iter__(self) -> Iterator[decisions.Candidate]:
        for c in self._seen:
            if c.id not in self._skip:
                yield c
        for c in self._source:
            self._seen.append(c)
            if c.id not in self._skip:
                yield c


def view_wake(view: decisions.View) -> float | None:
    return min(view.paused.values(), default=None)


def _not_installed(job: Job) -> str:
    names = ", ".join(job.engines)
    return f"engine: {names}: not installed here (no plugin, or no executable: see aq engines)"

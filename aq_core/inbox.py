"""Reading ``inbox/`` for the runner: each waiting job as a ``decisions.Candidate``, in the queue's
order (``decisions.queue_key``), and where the jobs they wait for (``after:``) are.

A job's candidate is kept while neither its file nor its meta changed, so a pick over 10,000 waiting
jobs reads no job file and no meta. On the way, a file that can never run is failed
(``transitions.invalid``), and a move out of inbox/ whose decision was written but whose rename was
not (``aq cancel`` killed) is finished (``transitions.replay``). ``read_only`` (``aq explain``) only
looks: it leaves such files for a runner.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
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

#: Seconds between full listings of inbox/ (a ``stat`` per file); names only in between.
FULL_LISTING = 1.0
#: The parsed jobs kept beyond the inbox's own before those that left are dropped (a pass over the
# cache once in that many claims: amortised, a round stays cheap at 10,000 waiting jobs).
FORGET_AFTER = 64


@dataclass(frozen=True)
class Refused:
    """An inbox file the runner leaves alone (its id is taken): said once, never run."""

    reason: str


class Inbox:
    """The runner's view of ``inbox/``; ``skip`` holds ids not to offer again in this round."""

    def __init__(
        self, store: Store, config: QueueConfig, journal: Journal, notify: Notify, read_only: bool = False
    ) -> None:
        self.store, self.config, self.journal, self.notify = store, config, journal, notify
        self.read_only = read_only
        self.parsed: dict[str, tuple[object, Job | str | Refused]] = {}
        self.cands: dict[str, tuple[object, decisions.Candidate]] = {}
        self.done: set[str] = set()  # jobs known to be in done/ (a done job stays done)
        self.states: dict[str, str | None] = {}  # where the jobs named in after: are, this round
        self.entries: dict[str, Entry] = {}  # the last listing of inbox/
        self.listed_at = float("-inf")
        self.refused: set[str] = set()
        self.skip: set[str] = set()
        self.busy = False  # a job's lock was held elsewhere this round: look again soon
        self.work_locks: dict[tuple[Path, str], str | None] = {}
        self._order: list[decisions.Candidate] = []  # the last full round's candidates, sorted
        self._versions: dict[str, object] = {}  # their entries' versions (and refused files')

    def round(self, running: set[str]) -> _Round:
        """Start a round of picks: the candidates in the queue's order, minus ``running`` and ``skip``;
        ``states`` then says where the jobs they wait for are."""
        self.skip = set(running)
        self.busy = False
        self.work_locks = {}
        entries = self._entries()
        if len(self.parsed) > len(entries) + FORGET_AFTER:
            self._forget_gone(entries)
        found = self._kept_order(entries)
        if found is None:
            found = sorted(self.candidates(entries), key=decisions.queue_key)
            self._order = found
            self._versions = {c.id: self.cands[c.id][0] for c in found}
            self._versions.update((e.id, e.version) for e in entries if e.id in self.refused)
        waiting = self.entries
        self.states = {}
        for c in found:
            for dep in c.after:
                if dep not in self.states:
                    self.states[dep] = self._state_of(dep, waiting, running)
        return _Round(found, self.skip)

    def _forget_gone(self, entries: list[Entry]) -> None:
        """Drop what was parsed of the jobs that left the inbox (claimed, moved): each holds its prompt,
        and a runner that lives for many jobs would keep every one. One that comes back has a new
        version and is parsed again."""
        for job_id in self.parsed.keys() - {e.id for e in entries}:
            del self.parsed[job_id]

    def _kept_order(self, entries: list[Entry]) -> list[decisions.Candidate] | None:
        """The last sorted round again, minus the jobs gone since, when no entry is new or changed
        (a runner's own claims are most rounds' only change): no candidate looked at, no sort.
        None when anything else changed, or a job's candidate was dropped since (``still_waiting``)."""
        skip = self.skip
        current = {e.id: e.version for e in entries if e.id not in skip}
        if not current.items() <= self._versions.items():
            return None
        cands = self.cands
        for gone in cands.keys() - current.keys():
            del cands[gone]
        found = [c for c in self._order if c.id in current]
        return found if len(found) == len(cands) else None

    def _entries(self) -> list[Entry]:
        """The inbox's entries (unsorted: the queue's order is decisions'). A full listing (one
        ``stat`` per file) at most every ``FULL_LISTING`` seconds; in between only the names, with
        a ``stat`` of the new ones: a job that left and came back in between is caught by
        ``still_waiting`` before its claim, or at the next full listing."""
        now = time.monotonic()
        names = getattr(self.store, "names", None)  # a store that can list names cheaply (the filesystem)
        if names is None or now - self.listed_at >= FULL_LISTING:
            self.entries = {e.id: e for e in self.store.scan(State.INBOX)}
            self.listed_at = now
            return list(self.entries.values())
        fresh: dict[str, Entry] = {}
        for name in names(State.INBOX):
            entry = self.entries.get(name) or self.store.entry(name, State.INBOX)
            if entry is not None:
                fresh[name] = entry
        self.entries = fresh
        return list(fresh.values())

    def _state_of(self, job_id: str, waiting: set[str], running: set[str]) -> str | None:
        if job_id in self.done:
            return State.DONE.value
        if job_id in running:
            return State.BUILDING.value
        if job_id in waiting:
            return State.INBOX.value
        state = self.store.locate(job_id)
        if state is State.DONE:
            self.done.add(job_id)
        return state.value if state is not None else None

    def job(self, job_id: str) -> Job | None:
        parsed = self.parsed.get(job_id)
        return parsed[1] if parsed is not None and isinstance(parsed[1], Job) else None

    def candidates(self, entries: list[Entry]) -> Iterator[decisions.Candidate]:
        """The waiting jobs of ``entries`` as ``decisions.Candidate`` values.

        Files that can never run are failed on the way (``transitions.invalid``); a move whose
        decision was written but not done (``aq cancel`` killed) is finished.
        """
        # The file's version changes with every move into inbox/ (a rename sets its ctime), and what
        # the claim needs of meta (next_eligible) is written before that move: a kept candidate is
        # current. A decision written since (``aq cancel`` killed before its rename) is caught
        # before the claim (``still_waiting``).
        cands, skip = self.cands, self.skip
        kept = {}
        new = [e.id for e in entries if e.id not in skip and cands.get(e.id, (None,))[0] != e.version]
        with read_ahead(self.store, new):  # a shared store: the new jobs' meta and files in one query
            for entry in entries:
                job_id = entry.id
                if job_id in skip:
                    continue
                cached = cands.get(job_id)
                if cached is None or cached[0] != entry.version:
                    cached = next(((entry.version, c) for c in self._candidate(entry)), None)
                    if cached is None:
                        continue
                kept[job_id] = cached
                yield cached[1]
        self.cands = kept

    def _candidate(self, entry: Entry) -> Iterator[decisions.Candidate]:
        """The candidate of one inbox entry (none for a file that cannot run, failed on the way)."""
        meta = self.store.read_meta(entry.id)
        parsed = self._parsed_job(entry, meta)
        if parsed is None:
            return
        if isinstance(parsed, Refused):
            if entry.id not in self.refused and not self.read_only:
                self.refused.add(entry.id)
                self.journal.say(None, parsed.reason)
            return
        if transitions.pending(meta, State.INBOX) in (State.DONE, State.FAILED):
            if not self.read_only:
                self.replay(entry.id)
            return
        usable = self._usable(parsed) if isinstance(parsed, Job) else ()
        if isinstance(parsed, str) or not usable:
            reason = parsed if isinstance(parsed, str) else _not_installed(parsed)
            if not self.read_only:
                self.reject(entry.id, reason)
            return
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
            not_before=parsed.not_before,
            after=parsed.after,
            priority=parsed.priority,
        )

    def problem(self, job_id: str) -> str | None:
        """Why a job read this round is not a candidate (its file is invalid, refused, or its engines
        cannot run here); None when nothing is known against it."""
        parsed = self.parsed.get(job_id)
        value = parsed[1] if parsed is not None else None
        if isinstance(value, str):
            return value
        if isinstance(value, Refused):
            return value.reason
        if isinstance(value, Job) and not self._usable(value):
            return _not_installed(value)
        return None

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
                profiles=self.config.profiles,
            )
        except JobInvalid as exc:
            return "; ".join(exc.problems)
        except (OSError, ValueError) as exc:
            return f"{name}: cannot read: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        except Exception as exc:  # whatever a hostile file does to a parser, the runner goes on
            return f"{name}: cannot be parsed: {type(exc).__name__}"

    def _locked_move(self, job_id: str, move: Callable[[], object], forget: dict) -> None:
        """Make ``move`` under the job's lock (a busy lock leaves it for the next pick), then drop the
        job from ``forget`` (a cache of this picker's)."""
        job_lock = self.store.coord.try_lock("job:" + job_id)
        if job_lock is None:
            self.busy = True
            return
        try:
            with contextlib.suppress(Exception):  # a notifier's trouble must not stop the queue
                move()
        finally:
            job_lock.release()
            forget.pop(job_id, None)

    def reject(self, job_id: str, reason: str) -> None:
        """Fail an invalid job file for good, keeping the file (in ``failed/``) and the reason."""
        move = lambda: transitions.invalid(self.store, self.journal, job_id, reason, notify=self.notify)  # noqa: E731
        self._locked_move(job_id, move, self.parsed)

    def still_waiting(self, job_id: str) -> bool:
        """Just before a claim: False (and the move finished) when a move out of inbox/ was decided
        but not done; the caller holds the job's lock."""
        with read_ahead(self.store, [job_id] if job_id in self.cands else [], data=False):
            current = self.store.entry(job_id, State.INBOX)
            cached = self.cands.get(job_id)
            self.entries.pop(job_id, None)  # claimed next, or changed: listed afresh either way
            if current is None or cached is None or cached[0] != current.version:
                self.cands.pop(job_id, None)
                return False
            meta = self.store.read_meta(job_id)
        dst = transitions.pending(meta, State.INBOX)
        if dst in (State.DONE, State.FAILED):
            said = f"recovered: a move to {dst.value}/ was decided but not done; moved to {dst.value}/"
            transitions.replay(self.store, self.journal, job_id, State.INBOX, dst, said, self.notify)
            self.cands.pop(job_id, None)
            return False
        return True

    def fail_dependants(self, doomed: tuple[tuple[str, str], ...]) -> None:
        """Fail each job whose dependency failed for good (or is gone), without running it."""
        for job_id, dependency in doomed:
            self._locked_move(
                job_id,
                lambda j=job_id, d=dependency: transitions.dependency_failed(
                    self.store, self.journal, j, d, notify=self.notify
                ),
                self.cands,
            )

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


class _Round:
    """The round's candidates in the queue's order, minus the ids in ``skip`` (which grows as jobs
    start): ``decisions.choose`` is asked once per free worker over the same queue."""

    def __init__(self, found: list[decisions.Candidate], skip: set[str]) -> None:
        self._found, self._skip = found, skip

    def __iter__(self) -> Iterator[decisions.Candidate]:
        skip = self._skip
        return iter([c for c in self._found if c.id not in skip] if skip else self._found)


def read_ahead(store: Store, job_ids: list[str], data: bool = True) -> contextlib.AbstractContextManager:
    """Read these jobs ahead in one round trip where the store can (``PgStore.prefetched``)."""
    prefetched = getattr(store, "prefetched", None)
    return prefetched(job_ids, data) if prefetched is not None and job_ids else contextlib.nullcontext()


def view_wake(view: decisions.View) -> float | None:
    return min(view.paused.values(), default=None)


def _not_installed(job: Job) -> str:
    names = ", ".join(job.engines)
    return f"engine: {names}: not installed here (no plugin, or no executable: see aq engines)"

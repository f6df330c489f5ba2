"""The queue's rules as pure functions: where a job goes after an attempt, and which job runs next.

Nothing here reads the store, the clock or a plugin: the runner gathers the facts (a snapshot),
asks, and applies the answer through ``aq_core.transitions``. A new scheduling rule (dependencies,
priorities, a start time) is a field of ``Candidate`` and a line of ``blocked``/``queue_key``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from aq_core.retry import LIMIT_CLASSES, RetryPolicy

#: Orphaned attempts in a row (the runner died each time) after which a job fails.
MAX_ORPHANS = 3

# -- after an attempt ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """Where a job goes, and the meta that records why (written before the move).

    ``state`` is ``done``, ``inbox`` (back in the queue, eligible at ``meta["next_eligible"]`` when
    set) or ``failed``. ``pause`` names a limit class: pause the job's engine first (until
    ``limits.hold_until`` says). ``note`` is the journal's reason when it is not the plain result.
    """

    state: Literal["done", "inbox", "failed"]
    meta: dict[str, object]
    pause: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class AttemptEnd:
    """How an attempt ended, and what the job allows.

    :param cls: ``ok``, a failure class, or how the runner ended it: ``stopped`` (the runner
        stopped), ``cancelled`` (``aq cancel``), ``orphaned`` (its runner died).
    :param retries: retries already used. :param orphans: orphaned attempts in a row, this one included.
    :param on_limit: ``pause`` (wait for the engine, no retry used) or ``fail``.
    :param max_cost_usd: the job's budget; :param spent: what its attempts cost, this one included.
    """

    cls: str
    now: float
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    retries: int = 0
    orphans: int = 0
    on_limit: str = "pause"
    max_cost_usd: float | None = None
    spent: float | None = None


def retry_decision(policy: RetryPolicy, failure_class: str, retries_done: int, now: float) -> Decision:
    """``ok`` is done; a class in ``retry.on`` with retries left goes back, eligible after the backoff;
    one in ``on`` with none left is ``retries_exhausted`` (the class kept as ``last_failure``); any
    other class fails at once under its own name."""
    if failure_class == "ok":
        return Decision("done", {"result": "ok"})
    if policy.allows(failure_class, retries_done):
        number = retries_done + 1
        return Decision(
            "inbox",
            {"result": failure_class, "retries": number, "next_eligible": round(now + policy.delay(number), 3)},
        )
    if policy.max > 0 and failure_class in policy.on:
        return Decision("failed", {"result": "retries_exhausted", "last_failure": failure_class})
    return Decision("failed", {"result": failure_class, "last_failure": failure_class})


def after_attempt(end: AttemptEnd) -> Decision:
    """Return where the job goes after an attempt that ended as ``end`` says."""
    cls = end.cls
    if cls == "stopped":
        return Decision("inbox", {"result": "stopped"}, note="stopped by the runner; back in inbox/ (no retry used)")
    if cls == "cancelled":
        return Decision("failed", {"result": "cancelled"})
    if cls == "orphaned":
        if end.orphans >= MAX_ORPHANS:
            return Decision("failed", {"result": "retries_exhausted", "last_failure": "orphaned"})
        return Decision("inbox", {"result": "orphaned"})
    if cls in LIMIT_CLASSES:
        if end.on_limit == "fail":
            return Decision("failed", {"result": cls, "last_failure": cls}, pause=cls, note=f"{cls} (on_limit: fail)")
        return Decision("inbox", {"result": cls}, pause=cls, note=f"{cls}: back in inbox/, waiting for the engine")
    decision = retry_decision(end.retry, cls, end.retries, end.now)
    over = end.max_cost_usd is not None and end.spent is not None and end.spent >= end.max_cost_usd
    if over and cls != "ok":
        return Decision(
            "failed",
            {"result": "budget_exceeded", "last_failure": cls},
            note=f"budget_exceeded: ${end.spent:.2f} spent of max_cost_usd ${end.max_cost_usd:.2f}",
        )
    return decision


# -- which job next -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A valid job waiting in ``inbox/``, as the runner sees it.

    :param engines: the job's engines that can run here (installed, executable found), in its order.
    :param locks: the lock names it must hold while it runs (its ``lock:``, its work tree's).
    :param next_eligible: not before this time (a retry's backoff).
    The next rules plug in here, with no effect at their defaults.
    """

    id: str
    added: float
    engines: tuple[str, ...]
    locks: tuple[str, ...] = ()
    next_eligible: float | None = None


@dataclass(frozen=True)
class View:
    """The rest of the world at ``now``.

    :param held: lock names known to be held (by this runner's jobs, or refused a moment ago).
    :param paused: paused engines and until when. :param probing: engines running one job at a time
        after a pause (the job takes ``probe:<engine>``). :param budget_spent: engines whose daily
        budget is spent (no new job until tomorrow).
    """

    now: float
    held: frozenset[str] = frozenset()
    paused: Mapping[str, float] = field(default_factory=dict)
    probing: frozenset[str] = frozenset()
    budget_spent: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Choice:
    """Run ``job`` on ``engine`` holding ``locks`` (its own, plus ``probe:<engine>`` when probing)."""

    job: str
    engine: str
    locks: tuple[str, ...]


@dataclass(frozen=True)
class Pick:
    """The answer: a choice (or none); when to look again; whether jobs wait (for anything but budget);
    the engines whose spent budget held a job back."""

    choice: Choice | None
    wake: float | None
    waiting: bool
    budget_blocked: tuple[str, ...] = ()


def queue_key(c: Candidate) -> tuple:
    """The queue's order: oldest first."""
    return (c.added, c.id)


def blocked(c: Candidate, view: View) -> float | bool:
    """Why ``c`` cannot start for a while: the time it may (a float), True (wait, no time known), or
    False (nothing in the job itself holds it back)."""
    if c.next_eligible and c.next_eligible > view.now:
        return c.next_eligible
    return False


def engine_for(c: Candidate, view: View) -> tuple[str | None, list[str], bool]:
    """The first of ``c``'s engines that may start a job now (or None); the engines passed over
    because their budget is spent; whether a paused engine was passed over (then the job waits)."""
    budget: list[str] = []
    paused = False
    for name in c.engines:
        if name in view.paused:
            paused = True
        elif name in view.budget_spent:
            budget.append(name)
        else:
            return name, budget, paused
    return None, budget, paused


def choose(candidates: Iterable[Candidate], view: View) -> Pick:
    """Return the first candidate, in the order given (``queue_key``), that may start now.

    ``candidates`` may be produced lazily: the scan stops at the first runnable job.
    """
    wake: float | None = min(view.paused.values(), default=None)
    waiting = False
    budget: list[str] = []
    for c in candidates:
        hold = blocked(c, view)
        if hold is not False:
            waiting = True
            if hold is not True:
                wake = hold if wake is None else min(wake, hold)
            continue
        engine, spent, paused = engine_for(c, view)
        budget.extend(n for n in spent if n not in budget)
        if engine is None:
            # A paused engine comes back by itself: wait for it. A spent budget is only tomorrow's.
            waiting = waiting or paused
            continue
        locks = c.locks + (("probe:" + engine,) if engine in view.probing else ())
        if any(name in view.held for name in locks):
            waiting = True
            continue
        return Pick(Choice(c.id, engine, locks), wake, True, tuple(budget))
    return Pick(None, wake, waiting, tuple(budget))

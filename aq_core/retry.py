"""The retry policy: which failures are retried, how often, and after what delay."""

from __future__ import annotations

import random
from dataclasses import dataclass

DEFAULT_ON = ("timeout", "verify_failed", "crash")


@dataclass(frozen=True)
class RetryPolicy:
    """``retry:`` of a job file.

    ``max`` retries after the first attempt; the n-th retry (n = 1, 2, ...) becomes eligible
    ``backoff * factor ** (n - 1)`` seconds after the failure, capped at ``max_backoff``, then
    spread by ``jitter`` (a fraction: 0.2 means up to 20% earlier or later).
    """

    max: int = 0
    backoff: float = 0.0
    factor: float = 1.0
    max_backoff: float | None = None
    jitter: float = 0.0
    on: tuple[str, ...] = DEFAULT_ON

    def delay(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Return the delay in seconds before retry ``retry_number`` (1-based) may start."""
        base = self.backoff * self.factor ** max(0, retry_number - 1)
        if self.max_backoff is not None:
            base = min(base, self.max_backoff)
        if self.jitter and base:
            base *= 1 + (rng or random).uniform(-self.jitter, self.jitter)
        return max(0.0, base)

    def allows(self, failure_class: str, retries_done: int) -> bool:
        """True when a failure of ``failure_class`` after ``retries_done`` retries is retried."""
        return failure_class in self.on and retries_done < self.max


NO_RETRY = RetryPolicy()


@dataclass(frozen=True)
class Decision:
    """Where a job goes after an attempt, and the meta that records why."""

    state: str  # "done", "inbox" or "failed"
    meta: dict


def decide(policy: RetryPolicy, failure_class: str, retries_done: int, now: float) -> Decision:
    """Return what happens to a job whose attempt ended with ``failure_class``.

    ``ok`` is done; a class in ``retry.on`` with retries left goes back to the inbox, eligible after
    the backoff; a class in ``on`` with none left is ``retries_exhausted`` (the class kept as
    ``last_failure``); any other class fails at once under its own name.
    """
    if failure_class == "ok":
        return Decision("done", {"result": "ok"})
    if policy.allows(failure_class, retries_done):
        retry_number = retries_done + 1
        return Decision(
            "inbox",
            {
                "result": failure_class,
                "retries": retry_number,
                "next_eligible": round(now + policy.delay(retry_number), 3),
            },
        )
    if policy.max > 0 and failure_class in policy.on:
        return Decision("failed", {"result": "retries_exhausted", "last_failure": failure_class})
    return Decision("failed", {"result": failure_class, "last_failure": failure_class})

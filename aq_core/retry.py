"""Failure classes and the retry policy: which failures are retried, how often, after what delay.

Where a job goes after an attempt is decided in ``aq_core.decisions``; this module owns the policy value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import random

#: Failure classes the core itself produces; engines may add their own (see ``Engine.failure_classes``).
CORE_FAILURE_CLASSES = ("timeout", "verify_failed", "crash", "stalled")
#: Classes an engine commonly reports; they drive retry and (for limits) engine pauses.
ENGINE_FAILURE_CLASSES = ("auth_error", "rate_limited", "usage_limit")
#: Classes that mean "the engine is out of quota", not "the job failed".
LIMIT_CLASSES = ("rate_limited", "usage_limit")
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
            import random  # here: `aq add` never needs it

            base *= 1 + (rng or random).uniform(-self.jitter, self.jitter)
        return max(0.0, base)

    def allows(self, failure_class: str, retries_done: int) -> bool:
        """True when a failure of ``failure_class`` after ``retries_done`` retries is retried."""
        return failure_class in self.on and retries_done < self.max


NO_RETRY = RetryPolicy()

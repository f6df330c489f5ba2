"""The retry policy: which classes retry, the backoff schedule (fixed or exponential with jitter)."""

from __future__ import annotations

import random

from aq_core.retry import RetryPolicy


def test_fixed_backoff() -> None:
    policy = RetryPolicy(max=3, backoff=300)
    assert [policy.delay(n) for n in (1, 2, 3)] == [300, 300, 300]


def test_exponential_backoff_is_capped() -> None:
    policy = RetryPolicy(max=5, backoff=30, factor=2, max_backoff=100)
    assert [policy.delay(n) for n in range(1, 6)] == [30, 60, 100, 100, 100]


def test_jitter_stays_within_its_fraction_and_varies() -> None:
    policy = RetryPolicy(max=3, backoff=100, jitter=0.2)
    rng = random.Random(1)
    delays = [policy.delay(1, rng) for _ in range(200)]
    assert all(80 <= d <= 120 for d in delays)
    assert len({round(d, 3) for d in delays}) > 50

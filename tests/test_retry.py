"""The retry policy: which classes retry, the backoff schedule (fixed or exponential with jitter)."""

from __future__ import annotations

import random

import pytest

from aq_core.retry import RetryPolicy, decide


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


@pytest.mark.parametrize(
    ("cls", "done", "state", "result"),
    [
        ("ok", 0, "done", "ok"),
        ("crash", 0, "inbox", "crash"),
        ("crash", 2, "failed", "retries_exhausted"),
        ("timeout", 0, "failed", "timeout"),
        ("auth_error", 0, "failed", "auth_error"),
    ],
)
def test_decide(cls: str, done: int, state: str, result: str) -> None:
    decision = decide(RetryPolicy(max=2, backoff=10, on=("crash",)), cls, done, now=1000.0)
    assert (decision.state, decision.meta["result"]) == (state, result)
    if state == "inbox":
        assert decision.meta["next_eligible"] == 1010.0 and decision.meta["retries"] == done + 1
    if result == "retries_exhausted":
        assert decision.meta["last_failure"] == cls


def test_no_retry_policy_fails_with_the_class_itself() -> None:
    decision = decide(RetryPolicy(), "crash", 0, now=0.0)
    assert (decision.state, decision.meta["result"]) == ("failed", "crash")

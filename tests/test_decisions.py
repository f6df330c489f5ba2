"""The queue's rules as pure functions, table by table: after an attempt, and which job is next."""

from __future__ import annotations

import pytest

from aq_core.decisions import (
    MAX_ORPHANS,
    AttemptEnd,
    Candidate,
    Choice,
    View,
    after_attempt,
    choose,
    queue_key,
    retry_decision,
)
from aq_core.retry import RetryPolicy

NOW = 1000.0
POLICY = RetryPolicy(max=2, backoff=10, on=("crash", "timeout"))


# -- where a job goes after an attempt ------------------------------------------------------------


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
def test_retry_decision(cls: str, done: int, state: str, result: str) -> None:
    decision = retry_decision(RetryPolicy(max=2, backoff=10, on=("crash",)), cls, done, now=NOW)
    assert (decision.state, decision.meta["result"]) == (state, result)
    if state == "inbox":
        assert decision.meta["next_eligible"] == 1010.0 and decision.meta["retries"] == done + 1
    if result == "retries_exhausted":
        assert decision.meta["last_failure"] == cls


def test_no_retry_policy_fails_with_the_class_itself() -> None:
    decision = retry_decision(RetryPolicy(), "crash", 0, now=0.0)
    assert (decision.state, decision.meta["result"]) == ("failed", "crash")


AFTER = [
    # (case, AttemptEnd fields, state, meta expected (subset), pause)
    ("ok is done", {"cls": "ok"}, "done", {"result": "ok"}, None),
    ("ok within budget", {"cls": "ok", "max_cost_usd": 1.0, "spent": 2.0}, "done", {"result": "ok"}, None),
    (
        "crash with retries left: backoff",
        {"cls": "crash", "retries": 0},
        "inbox",
        {"result": "crash", "retries": 1, "next_eligible": NOW + 10},
        None,
    ),
    (
        "second retry: the backoff grows with the factor",
        {"cls": "timeout", "retries": 1, "retry": RetryPolicy(max=3, backoff=10, factor=2, on=("timeout",))},
        "inbox",
        {"result": "timeout", "retries": 2, "next_eligible": NOW + 20},
        None,
    ),
    (
        "crash with none left",
        {"cls": "crash", "retries": 2},
        "failed",
        {"result": "retries_exhausted", "last_failure": "crash"},
        None,
    ),
    ("a class not in retry.on", {"cls": "auth_error"}, "failed", {"result": "auth_error"}, None),
    (
        "over budget: no retry even with retries left",
        {"cls": "crash", "max_cost_usd": 1.0, "spent": 1.0},
        "failed",
        {"result": "budget_exceeded", "last_failure": "crash"},
        None,
    ),
    (
        "under budget: retried",
        {"cls": "crash", "max_cost_usd": 1.0, "spent": 0.5},
        "inbox",
        {"result": "crash", "retries": 1},
        None,
    ),
    (
        "usage limit: pause and requeue, no retry used",
        {"cls": "usage_limit"},
        "inbox",
        {"result": "usage_limit"},
        "usage_limit",
    ),
    ("rate limit: pause and requeue", {"cls": "rate_limited"}, "inbox", {"result": "rate_limited"}, "rate_limited"),
    (
        "limit with on_limit fail",
        {"cls": "usage_limit", "on_limit": "fail"},
        "failed",
        {"result": "usage_limit", "last_failure": "usage_limit"},
        "usage_limit",
    ),
    (
        "limit over budget still waits for the engine",
        {"cls": "usage_limit", "max_cost_usd": 1.0, "spent": 5.0},
        "inbox",
        {"result": "usage_limit"},
        "usage_limit",
    ),
    ("stopped by the runner: no retry used", {"cls": "stopped", "retries": 2}, "inbox", {"result": "stopped"}, None),
    ("cancelled", {"cls": "cancelled"}, "failed", {"result": "cancelled"}, None),
    ("orphaned once", {"cls": "orphaned", "orphans": 1}, "inbox", {"result": "orphaned"}, None),
    (
        "orphaned too often",
        {"cls": "orphaned", "orphans": MAX_ORPHANS},
        "failed",
        {"result": "retries_exhausted", "last_failure": "orphaned"},
        None,
    ),
]


@pytest.mark.parametrize(("case", "fields", "state", "meta", "pause"), AFTER, ids=[row[0] for row in AFTER])
def test_after_attempt(case: str, fields: dict, state: str, meta: dict, pause: str | None) -> None:
    decision = after_attempt(AttemptEnd(**{"now": NOW, "retry": POLICY, **fields}))
    assert decision.state == state, case
    assert {k: decision.meta.get(k) for k in meta} == meta, case
    assert decision.pause == pause, case
    if state != "inbox" or pause:
        assert "next_eligible" not in decision.meta  # only a retry's backoff delays a requeued job


def test_a_requeue_never_fails_the_job_for_the_budget_of_a_successful_attempt() -> None:
    assert after_attempt(AttemptEnd(cls="ok", now=NOW, max_cost_usd=0.0, spent=9.9)).state == "done"


# -- which job next -------------------------------------------------------------------------------


def cand(job: str, added: float, engines: tuple[str, ...] = ("e",), **kw: object) -> Candidate:
    return Candidate(id=job, added=added, engines=engines, **kw)  # type: ignore[arg-type]


A, B, C = cand("a", 1), cand("b", 2), cand("c", 3)

CHOOSE = [
    # (case, candidates, view fields, chosen (job, engine, locks) or None, waiting, wake)
    ("oldest first", [A, B, C], {}, ("a", "e", ()), True, None),
    ("nothing waits", [], {}, None, False, None),
    (
        "a backoff skips the job and wakes at its time",
        [cand("a", 1, next_eligible=NOW + 5), B],
        {},
        ("b", "e", ()),
        True,
        NOW + 5,
    ),
    ("a backoff that is over", [cand("a", 1, next_eligible=NOW - 1), B], {}, ("a", "e", ()), True, None),
    ("only backoffs", [cand("a", 1, next_eligible=NOW + 7)], {}, None, True, NOW + 7),
    (
        "a held lock skips the job",
        [cand("a", 1, locks=("lock:x",)), cand("b", 2, locks=("lock:y",))],
        {"held": frozenset({"lock:x"})},
        ("b", "e", ("lock:y",)),
        True,
        None,
    ),
    (
        "everything locked: wait",
        [cand("a", 1, locks=("lock:x",))],
        {"held": frozenset({"lock:x"})},
        None,
        True,
        None,
    ),
    (
        "a paused engine: the next engine of the job runs it",
        [cand("a", 1, engines=("p", "q"))],
        {"paused": {"p": NOW + 60}},
        ("a", "q", ()),
        True,
        NOW + 60,
    ),
    (
        "a paused engine and no other: wait until the pause ends",
        [cand("a", 1, engines=("p",)), cand("b", 2, engines=("q",))],
        {"paused": {"p": NOW + 60}},
        ("b", "q", ()),
        True,
        NOW + 60,
    ),
    ("only paused: wait", [cand("a", 1, engines=("p",))], {"paused": {"p": NOW + 60}}, None, True, NOW + 60),
    (
        "a probing engine adds its probe lock",
        [cand("a", 1, engines=("p",), locks=("lock:x",))],
        {"probing": frozenset({"p"})},
        ("a", "p", ("lock:x", "probe:p")),
        True,
        None,
    ),
    (
        "a probe already running elsewhere holds the job back",
        [cand("a", 1, engines=("p",))],
        {"probing": frozenset({"p"}), "held": frozenset({"probe:p"})},
        None,
        True,
        None,
    ),
    (
        "budget spent: not waited for",
        [cand("a", 1, engines=("b1",))],
        {"budget_spent": frozenset({"b1"})},
        None,
        False,
        None,
    ),
    (
        "budget spent on the first engine: the fallback runs it",
        [cand("a", 1, engines=("b1", "e"))],
        {"budget_spent": frozenset({"b1"})},
        ("a", "e", ()),
        True,
        None,
    ),
    (
        "paused and budget-spent: wait for the pause",
        [cand("a", 1, engines=("p", "b1"))],
        {"paused": {"p": NOW + 9}, "budget_spent": frozenset({"b1"})},
        None,
        True,
        NOW + 9,
    ),
]


@pytest.mark.parametrize(("case", "cands", "fields", "chosen", "waiting", "wake"), CHOOSE, ids=[r[0] for r in CHOOSE])
def test_choose(case: str, cands: list, fields: dict, chosen: tuple | None, waiting: bool, wake: float | None) -> None:
    pick = choose(sorted(cands, key=queue_key), View(now=NOW, **fields))
    assert pick.choice == (Choice(*chosen) if chosen else None), case
    assert (pick.waiting, pick.wake) == (waiting, wake), case


def test_choose_names_the_engines_whose_budget_held_a_job_back() -> None:
    pick = choose([cand("a", 1, engines=("b1", "e"))], View(now=NOW, budget_spent=frozenset({"b1"})))
    assert pick.choice == Choice("a", "e", ()) and pick.budget_blocked == ("b1",)


def test_choose_stops_reading_at_the_first_runnable_job() -> None:
    read = []

    def lazily():
        for c in (A, B, C):
            read.append(c.id)
            yield c

    assert choose(lazily(), View(now=NOW)).choice == Choice("a", "e", ())
    assert read == ["a"]


def test_queue_order_is_oldest_first_then_id() -> None:
    jobs = [cand("b", 2), cand("z", 1), cand("a", 1)]
    assert [c.id for c in sorted(jobs, key=queue_key)] == ["a", "z", "b"]

"""The plan's rules, table by table: dependencies, priority, not_before, and explain's reasons."""

from __future__ import annotations

import pytest

from aq_core.decisions import Candidate, View, choose, queue_key, reasons

NOW = 1000.0


def cand(job: str, added: float = 0.0, engines=("claude",), **kw) -> Candidate:
    return Candidate(id=job, added=added, engines=engines, **kw)  # type: ignore[arg-type]


CASES = [
    # (case, candidates, view fields, chosen, waiting, wake, doomed)
    ("a dependency done: runs", [cand("b", after=("a",))], {"states": {"a": "done"}}, "b", True, None, ()),
    (
        "a dependency waiting: the job waits",
        [cand("a", 1), cand("b", 0, after=("a",))],
        {"states": {"a": "inbox"}},
        "a",
        True,
        None,
        (),
    ),
    ("a dependency running: waits", [cand("b", after=("a",))], {"states": {"a": "building"}}, None, True, None, ()),
    (
        "a dependency failed: doomed",
        [cand("b", after=("a",))],
        {"states": {"a": "failed"}},
        None,
        False,
        None,
        (("b", "a"),),
    ),
    ("a dependency gone: doomed", [cand("b", after=("a",))], {"states": {"a": None}}, None, False, None, (("b", "a"),)),
    (
        "one of two failed: doomed by it",
        [cand("c", after=("a", "b"))],
        {"states": {"a": "done", "b": "failed"}},
        None,
        False,
        None,
        (("c", "b"),),
    ),
    (
        "waiting on a job held by a spent budget only: not waited for",
        [cand("a", engines=("codex",)), cand("b", after=("a",))],
        {"states": {"a": "inbox"}, "budget_spent": frozenset({"codex"})},
        None,
        False,
        None,
        (),
    ),
    (
        "waiting on a job waiting for its time: waited for",
        [cand("a", not_before=NOW + 50), cand("b", after=("a",))],
        {"states": {"a": "inbox"}},
        None,
        True,
        NOW + 50,
        (),
    ),
    (
        "a chain waiting on a time: waited for",
        [cand("a", not_before=NOW + 50), cand("b", after=("a",)), cand("c", after=("b",))],
        {"states": {"a": "inbox", "b": "inbox"}},
        None,
        True,
        NOW + 50,
        (),
    ),
    ("not_before in the future: waits until then", [cand("a", not_before=NOW + 5)], {}, None, True, NOW + 5, ()),
    ("not_before passed: runs", [cand("a", not_before=NOW - 5)], {}, "a", True, None, ()),
    (
        "priority first, then oldest",
        sorted([cand("old", 1), cand("urgent", 9, priority=5), cand("older", 0)], key=queue_key),
        {},
        "urgent",
        True,
        None,
        (),
    ),
]


@pytest.mark.parametrize(
    ("case", "cands", "fields", "chosen", "waiting", "wake", "doomed"), CASES, ids=[c[0] for c in CASES]
)
def test_choose_with_a_plan(case, cands, fields, chosen, waiting, wake, doomed) -> None:
    pick = choose(cands, View(now=NOW, **fields))
    assert (pick.choice.job if pick.choice else None) == chosen
    if chosen is None:
        assert (pick.waiting, pick.wake, pick.doomed) == (waiting, wake, doomed)


def test_queue_key_highest_priority_then_oldest_then_id() -> None:
    jobs = [cand("c", 2), cand("b", 1, priority=-1), cand("a", 3, priority=1), cand("d", 2)]
    assert [c.id for c in sorted(jobs, key=queue_key)] == ["a", "c", "d", "b"]


def test_reasons_name_every_hold() -> None:
    c = cand(
        "job",
        engines=("claude", "codex"),
        locks=("lock:repo",),
        not_before=NOW + 10,
        next_eligible=NOW + 20,
        after=("a", "b"),
    )
    view = View(
        now=NOW,
        states={"a": "done", "b": "inbox"},
        paused={"claude": NOW + 30},
        budget_spent=frozenset({"codex"}),
        held=frozenset({"lock:repo"}),
    )
    assert reasons(c, view, [], {"lock:repo": "other"}) == [
        {"kind": "dependency", "job": "b", "state": "inbox"},
        {"kind": "not_before", "until": NOW + 10},
        {"kind": "backoff", "until": NOW + 20},
        {"kind": "engine_paused", "engine": "claude", "until": NOW + 30},
        {"kind": "budget", "name": "codex"},
        {"kind": "lock", "lock": "repo", "held_by": "other"},
    ]
    free = cand("job", locks=("lock:repo",))
    assert reasons(free, View(now=NOW, held=frozenset({"lock:repo"})), [], {"lock:repo": "other"}) == [
        {"kind": "lock", "lock": "repo", "held_by": "other"}
    ]


def test_reasons_queued_behind_the_eligible_jobs_that_go_first() -> None:
    me = cand("me", 5)
    others = [
        cand("first", 1),
        cand("urgent", 9, priority=2),
        cand("later", 7),
        cand("blocked", 0, not_before=NOW + 9),
        me,
    ]
    assert reasons(me, View(now=NOW), others) == [{"kind": "queued_behind", "ahead": ["first", "urgent"]}]
    assert reasons(cand("top", 0, priority=9), View(now=NOW), others) == []

"""The plan that ``after:`` makes: unknown ids, cycles, dependants, and ``not_before`` times (table tests)."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from aq_core.plan import check_after, dependants, find_cycle, parse_after
from aq_core.when import parse_when


@pytest.mark.parametrize(
    ("value", "expected"),
    [("a", ("a",)), (["a", "b"], ("a", "b")), (["a", "a"], ("a",)), (" x.1 ", ("x.1",))],
)
def test_parse_after(value, expected):
    assert parse_after(value) == expected


@pytest.mark.parametrize("value", [[], 5, None, "../x", ["a", 3], {"a": 1}, True])
def test_parse_after_rejects(value):
    with pytest.raises(ValueError):
        parse_after(value)


@pytest.mark.parametrize(
    ("graph", "cycle"),
    [
        ({}, None),
        ({"a": []}, None),
        ({"a": ["a"]}, ["a", "a"]),
        ({"ping": ["pong"], "pong": ["ping"]}, ["ping", "pong", "ping"]),
        ({"a": ["b"], "b": ["c"], "c": []}, None),
        ({"a": ["b"], "b": ["c"], "c": ["b"]}, ["b", "c", "b"]),
        ({"a": ["old"], "b": ["a"]}, None),  # "old" is outside the graph: it cannot wait for a new job
        ({"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": []}, None),  # a diamond is no cycle
    ],
)
def test_find_cycle(graph, cycle):
    assert find_cycle(graph) == cycle


@pytest.mark.parametrize(
    ("new", "known", "expected"),
    [
        ({"a": ["x"]}, {"x"}, {}),
        ({"a": ["b"], "b": []}, set(), {}),
        ({"a": ["nope"]}, {"x"}, {"a": ["after: 'nope' is not a job in the queue or in this add"]}),
        ({"a": ["a"]}, set(), {"a": ["after: cycle a -> a"]}),
        (
            {"ping": ["pong"], "pong": ["ping"], "free": []},
            set(),
            {"ping": ["after: cycle ping -> pong -> ping"], "pong": ["after: cycle ping -> pong -> ping"]},
        ),
    ],
)
def test_check_after(new, known, expected):
    assert check_after(new, known) == expected


@pytest.mark.parametrize(
    ("job", "graph", "expected"),
    [
        ("a", {"b": ["a"], "c": ["b"], "d": ["x"]}, ["b", "c"]),
        ("a", {"b": ["a"], "c": ["a", "b"]}, ["b", "c"]),
        ("a", {"b": ["x"]}, []),
        ("a", {"a": ["b"], "b": ["a"]}, ["b"]),  # never itself, even around a cycle
    ],
)
def test_dependants(job, graph, expected):
    assert dependants(job, graph) == expected


def test_parse_when_forms():
    assert parse_when(1767225600) == 1767225600.0
    assert parse_when("1767225600") == 1767225600.0
    assert parse_when("2026-01-01T00:00:00Z") == 1767225600.0
    assert parse_when("2026-01-01T01:00:00+01:00") == 1767225600.0
    local = datetime(2026, 1, 1, 2, 30).timestamp()  # without an offset: host-local time
    assert parse_when("2026-01-01T02:30") == local
    assert parse_when("2026-01-01") == datetime(2026, 1, 1).timestamp()
    assert abs(parse_when(time.time()) - time.time()) < 5


@pytest.mark.parametrize(
    "value",
    ["tomorrow", "2026-13-01", "", True, None, [1], -5, 1e20, "2026-01-01T25:00", -(10**400), 10**400, float("nan")],
)
def test_parse_when_rejects(value):
    with pytest.raises(ValueError):
        parse_when(value)

"""The streaming JSON reader agrees with json.loads and rejects what json.loads rejects."""

from __future__ import annotations

import io
import json
import tracemalloc
from typing import Any

import pytest
from aq_devin.jsonstream import TRUNCATED, JSONStreamError, events
from hypothesis import given, settings
from hypothesis import strategies as st


def rebuild(data: bytes, **kw: Any) -> Any:
    """Rebuild the document from the event stream (tests that paths and nesting are right)."""
    root: list[Any] = []

    def put(path: tuple, value: Any) -> None:
        if not path:
            root.append(value)
            return
        node = root[0]
        for step in path[:-1]:
            node = node[step]
        if isinstance(node, list):
            assert path[-1] == len(node)
            node.append(value)
        else:
            node[path[-1]] = value

    for kind, path, value in events(io.BytesIO(data), **kw):
        if kind == "start_map":
            put(path, {})
        elif kind == "start_array":
            put(path, [])
        elif kind == "scalar":
            put(path, value)
    return root[0]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(value=json_values, indent=st.sampled_from([None, 0, 2]), chunk=st.sampled_from([1, 2, 3, 7, 64]))
def test_round_trip(value: Any, indent: int | None, chunk: int) -> None:
    for ascii_only in (True, False):
        data = json.dumps(value, indent=indent, ensure_ascii=ascii_only).encode()
        assert rebuild(data, chunk=chunk) == json.loads(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"   ",
        b"{",
        b'{"a": 1',
        b'{"a": "unterminated',
        b'{"a" 1}',
        b'{"a": 1,}',
        b"[1, 2,]",
        b"[1 2]",
        b'{"a": 1} {"b": 2}',
        b"{'a': 1}",
        b"nul",
        b"01",
        b"-",
        b'"\\x"',
        b'"\xff\xfe"',
        b"\x00\xff garbage",
        b'{"a": tru}',
    ],
)
def test_invalid_documents_raise(data: bytes) -> None:
    with pytest.raises(JSONStreamError):
        list(events(io.BytesIO(data)))
    with pytest.raises(ValueError):
        json.loads(data)


def test_long_strings_are_skipped_not_kept() -> None:
    data = json.dumps({"k" * 300: "v", "message": "x" * 10_000, "id": "abc"}).encode()
    got = list(events(io.BytesIO(data), key_cap=256, value_cap=4096, chunk=1000))
    scalars = [(path, value) for kind, path, value in got if kind == "scalar"]
    assert scalars[0] == ((TRUNCATED,), "v")
    assert scalars[1] == (("message",), TRUNCATED)
    assert scalars[2] == (("id",), "abc")


def test_strings_with_escapes_across_chunk_edges() -> None:
    value = {"a": 'quote " backslash \\ tab \t unicode \u00e9 \U0001f600 end'}
    data = json.dumps(value).encode()
    for chunk in range(1, 12):
        assert rebuild(data, chunk=chunk) == value


def test_depth_is_capped() -> None:
    with pytest.raises(JSONStreamError):
        list(events(io.BytesIO(b"[" * 600 + b"]" * 600), max_depth=512))


def test_memory_stays_flat_on_a_large_document() -> None:
    blob = "y" * (1 << 20)
    data = json.dumps({"steps": [{"message": blob, "n": i} for i in range(16)]}).encode()
    tracemalloc.start()
    try:
        count = sum(1 for _ in events(io.BytesIO(data)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count > 16
    assert peak < 1 << 20, f"held {peak} bytes for a {len(data)}-byte document"


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 64])
def test_skipped_strings_full_of_escapes_end_in_the_right_place(chunk: int) -> None:
    data = json.dumps({"a": '\\"\n' * 3000, "b": 1, "c": 'x\\"'}).encode()
    scalars = [(p, v) for k, p, v in events(io.BytesIO(data), value_cap=64, chunk=chunk) if k == "scalar"]
    assert scalars == [(("a",), TRUNCATED), (("b",), 1), (("c",), 'x\\"')]

"""The quick frontmatter reader gives exactly what the YAML loader gives, or hands the text to it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aq_core.frontmatter import read_simple
from aq_core.job import parse_job, yaml_loader

# Words YAML gives a meaning to, and their near misses.
TRICKY = [
    "null",
    "Null",
    "NULL",
    "nUll",
    "~",
    "true",
    "True",
    "TRUE",
    "tRue",
    "false",
    "False",
    "FALSE",
    "yes",
    "no",
    "on",
    "off",
    "Yes",
    "y",
    "n",
    "0",
    "00",
    "012",
    "0o12",
    "0x1f",
    "0b101",
    "1_000",
    "1:30",
    "190:20:30",
    "-1",
    "+1",
    "-0",
    "1.5",
    "01.5",
    ".5",
    "1.",
    "1e5",
    "1.0e+5",
    ".inf",
    "-.inf",
    ".nan",
    "NaN",
    "30m",
    "1h30m",
    "2d",
    "10s",
    "2026-01-01",
    "1" * 30,
    "1" * 5000,
    "0." + "1" * 30,
    "2026-1-01",
    "2026-01-01 09:00",
    "20260-01-01",
    "2026-13-45",
    "2001-12-14t21:59:43.10-05:00",
    "=",
    "<<",
    "-",
    "--",
    "-c",
    "--yolo",
    "/bin/true",
    "a b",
    "a  b",
    "make -j4 test",
    "gpt-4.1",
    "claude",
    "a#b",
    "a #b",
    "a: b",
    "a:b",
    "@x",
    "`x",
    "!x",
    "&a",
    "*a",
    "|",
    ">",
    "%x",
    "?",
    "? x",
    "x,y",
    "[x]",
    "{x}",
    '"x"',
    "'x'",
    '"a\\nb"',
    "'it''s'",
    '""',
    "''",
    "a\tb",
    "é",
    "x ",
    " x",
    "\\x",
    "a/b/c",
    "/",
    "//",
    "a=b",
    "a@b",
    "+x",
    "1a",
    "0a",
]
ALPHABET = st.sampled_from(list("abcxyz019 -_.:/#,[]{}\"'\\!&*@`|>%?=~+\t"))
SCALAR = st.one_of(st.sampled_from(TRICKY), st.text(ALPHABET, min_size=1, max_size=12))
VALUE = st.one_of(
    SCALAR,
    st.lists(SCALAR, max_size=4).map(lambda items: "[" + ", ".join(items) + "]"),
    st.lists(SCALAR, max_size=3).map(lambda items: "[" + ",".join(items) + "]"),
)
KEY = st.one_of(
    st.sampled_from(["engine", "command", "cwd", "timeout", "yolo", "model", "on", "null", "true", "retry"]),
    st.text(ALPHABET, min_size=1, max_size=6),
)
LINE = st.one_of(
    st.tuples(KEY, VALUE).map(lambda kv: f"{kv[0]}: {kv[1]}"),
    st.tuples(KEY, VALUE).map(lambda kv: f"{kv[0]}:{kv[1]}"),
    st.tuples(KEY, VALUE).map(lambda kv: f"  {kv[0]}: {kv[1]}"),
    st.sampled_from(["", "# a comment", "  # indented", "- item", "...", "---", "key:", "key: ", "%YAML 1.1"]),
)


def _typed(value: Any) -> Any:
    """The value with its types spelt out (``True == 1`` and ``1 == 1.0`` in Python, not in a job)."""
    if isinstance(value, dict):
        return ("dict", sorted((repr(k), _typed(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("list", [_typed(v) for v in value])
    return (type(value).__name__, repr(value))


def _full(text: str) -> Any:
    try:
        return yaml.load(text, Loader=yaml_loader())  # noqa: S506 - a safe loader
    except Exception as exc:
        return exc


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(LINE, min_size=1, max_size=6).map("\n".join), st.booleans())
@example("engine: claude\ntimeout: 30m\n", False)
@example('engine: command\ncommand: [/bin/sh, -c, "date > x"]\ncwd: /tmp/w\nyolo: true\n', False)
@example("engine: [claude, codex]\npriority: -3\nmax_cost_usd: 0.5\nafter: [a-1, b.2]\n", False)
def test_a_simple_reading_equals_the_yaml_loaders(text: str, newline: bool) -> None:
    text = text + "\n" if newline else text
    simple = read_simple(text)
    if simple is not None:
        full = _full(text)
        assert not isinstance(full, Exception), f"{text!r}: read as {simple!r}, YAML fails: {full}"
        assert _typed(simple) == _typed(full), text


def test_common_job_files_take_the_quick_path() -> None:
    for text in (
        "engine: claude\ntimeout: 30m\n",
        'engine: command\ncommand: [/bin/sh, -c, "date +%s.%N > /tmp/m"]\ncwd: /tmp/work\n',
        "engine: [claude, codex]\nyolo: true\nmodel: gpt-4.1\nverify: make test\nlock: repo-a\n",
        "# a comment\nengine: codex\n\npriority: 2\nnot_before: 2026-01-01\n",
    ):
        assert read_simple(text) == _full(text), text


@given(st.sampled_from(["engine: claude\nretry: {on: [rate_limit]}\n", "engine: claude\nyolo: yes\n", "engine: 'a\n"]))
def test_parse_job_gives_the_same_answer_either_way(text: str) -> None:
    data = ("---\n" + text + "---\nDo it.\n").encode()
    try:
        job = parse_job(Path("j.md"), data, engines=["claude"], default_cwd=Path("/tmp"))
        assert job.engines == ("claude",)
    except Exception as exc:  # the same one-line problem as before: PyYAML read it
        assert "j.md" in str(exc)

"""Read usage from the ATIF trajectory that ``devin -p --export PATH`` writes after each turn.

ATIF (Harbor's Agent Trajectory Interchange Format, RFC 0001) is one JSON document::

    {"schema_version": "ATIF-v1.7", "session_id": "...", "agent": {"name", "version", "model_name"},
     "steps": [{"step_id", "source": "user|agent|system", "model_name", "message",
                "tool_calls": [{"tool_call_id", "function_name", "arguments"}], "observation",
                "metrics": {"prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd",
                            "extra": {"cache_creation_input_tokens"}},
                "metadata": {...Devin...}, "extra": {...Devin...}}],
     "final_metrics": {"total_prompt_tokens", "total_completion_tokens", "total_cached_tokens",
                       "total_cost_usd", "total_steps"}}

Devin adds ``metadata.generation_model``, ``metadata.committed_credit_cost`` and, in older
exports, ``metadata.metrics{input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens}``
(the names ccusage's Devin reader accepts). Only values at these exact paths are read; message,
observation and tool-argument text is skipped, so an agent quoting figures cannot be counted.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from pathlib import Path
from typing import Any

from aq_core.enginekit import as_float, as_int
from aq_core.usage import Usage
from aq_devin.jsonstream import TRUNCATED, JSONStreamError, events

#: The export sits beside the attempt's log under this suffix (see ``export_path``).
EXPORT_SUFFIX = ".atif.json"

# Step fields read, by their path below ``steps[i]``.
_STEP_FIELDS: dict[tuple[str, ...], str] = {
    ("source",): "source",
    ("model_name",): "model_name",
    ("metrics", "prompt_tokens"): "prompt",
    ("metrics", "completion_tokens"): "completion",
    ("metrics", "cached_tokens"): "cached",
    ("metrics", "cost_usd"): "cost",
    ("metrics", "extra", "cache_creation_input_tokens"): "cache_write",
    ("metadata", "is_user_input"): "is_user_input",
    ("metadata", "generation_model"): "generation_model",
    ("extra", "generation_model"): "extra_generation_model",
    ("metadata", "committed_credit_cost"): "credit",
    ("extra", "committed_credit_cost"): "extra_credit",
    ("metadata", "metrics", "input_tokens"): "legacy_in",
    ("metadata", "metrics", "output_tokens"): "legacy_out",
    ("metadata", "metrics", "cache_read_tokens"): "legacy_cache_read",
    ("metadata", "metrics", "cache_creation_tokens"): "legacy_cache_write",
}
_SUMS = (
    "prompt",
    "completion",
    "cached",
    "cache_write",
    "legacy_in",
    "legacy_out",
    "legacy_cache_read",
    "legacy_cache_write",
)
_TOP_FIELDS = {
    ("session_id",): "session_id",
    ("schema_version",): "schema_version",
    ("agent", "name"): "agent_name",
    ("agent", "version"): "agent_version",
    ("agent", "model_name"): "agent_model",
}


def export_path(log_path: Path) -> Path:
    """Return where the ATIF export of the attempt logged at ``log_path`` is written."""
    return Path(str(log_path) + EXPORT_SUFFIX)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value and value is not TRUNCATED else None


class _Totals:
    """What the steps of one trajectory add up to."""

    def __init__(self) -> None:
        self.sums: dict[str, int] = {}
        self.cost: float | None = None
        self.credit: float | None = None
        self.turns = 0
        self.tool_ids: set[str] = set()
        self.anonymous_tool_calls = 0
        self.model_weight: Counter[str] = Counter()
        self.model_steps: Counter[str] = Counter()

    def add_step(self, fields: dict[str, Any]) -> None:
        if fields.get("is_user_input") is True or fields.get("source") == "user":
            return
        if fields.get("source") == "agent":
            self.turns += 1
        weight = 0
        for name in _SUMS:
            value = as_int(fields.get(name))
            if value is not None:
                self.sums[name] = self.sums.get(name, 0) + value
                if name in ("prompt", "completion", "legacy_in", "legacy_out"):
                    weight += value
        cost = as_float(fields.get("cost"))
        if cost is not None:
            self.cost = (self.cost or 0.0) + cost
        credit = as_float(fields.get("credit"))
        if credit is None:
            credit = as_float(fields.get("extra_credit"))
        if credit is not None:
            self.credit = (self.credit or 0.0) + credit
        model = (
            _text(fields.get("generation_model"))
            or _text(fields.get("extra_generation_model"))
            or _text(fields.get("model_name"))
        )
        if model is not None:
            self.model_weight[model] += weight
            self.model_steps[model] += 1

    def main_model(self) -> str | None:
        if not self.model_steps:
            return None
        return max(self.model_steps, key=lambda m: (self.model_weight[m], self.model_steps[m]))


def _scan(path: Path) -> tuple[dict[str, Any], dict[str, Any], _Totals, bool]:
    """Walk the export once; return its top fields, final_metrics, step totals, and whether it had steps."""
    top: dict[str, Any] = {}
    final: dict[str, Any] = {}
    totals = _Totals()
    saw_steps = False
    step: dict[str, Any] | None = None
    call_id: Any = None
    # O_NOFOLLOW: the export is aq's own file in the queue's logs directory, never a link elsewhere.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise JSONStreamError("not a regular file")
        first = True
        for kind, where, value in events(fh):
            if first:
                if kind != "start_map":
                    raise JSONStreamError("the export is not a JSON object")
                first = False
            depth = len(where)
            if depth >= 2 and where[0] == "steps" and isinstance(where[1], int):
                rest = where[2:]
                if not rest:
                    if kind == "start_map":
                        step = {}
                    elif kind == "end_map" and step is not None:
                        totals.add_step(step)
                        step = None
                    continue
                if step is None:
                    continue
                if rest[0] == "tool_calls" and len(rest) >= 2 and isinstance(rest[1], int):
                    if len(rest) == 2 and kind == "start_map":
                        call_id = None
                    elif len(rest) == 3 and rest[2] == "tool_call_id" and kind == "scalar":
                        call_id = value
                    elif len(rest) == 2 and kind == "end_map" and step.get("source") != "user":
                        ident = _text(call_id)
                        if ident is None:
                            totals.anonymous_tool_calls += 1
                        else:
                            totals.tool_ids.add(ident)
                    continue
                if kind == "scalar":
                    name = _STEP_FIELDS.get(rest)
                    if name is not None:
                        step[name] = value
            elif kind == "scalar":
                if depth == 2 and where[0] == "final_metrics":
                    final[where[1]] = value
                else:
                    name = _TOP_FIELDS.get(where)
                    if name is not None:
                        top[name] = value
            elif kind == "start_array" and where == ("steps",):
                saw_steps = True
    return top, final, totals, saw_steps


class _Fallback(Exception):
    """The fast reader cannot vouch for this file: let the streaming reader decide."""


def _fast_scan(path: Path, chunk: int = 1 << 20, max_value: int = 48 << 20) -> tuple[dict, dict, _Totals, bool]:
    """``_scan``'s answer, decoding each top-level value and each step with the C JSON decoder.

    An export is a few small top-level values and a long array of steps, each at most a few MB, so
    decoding one step at a time keeps memory to a window of the file while running at C speed. Any
    doubt (invalid or torn JSON, a value larger than ``max_value``) raises ``_Fallback``.
    """
    import codecs
    import json
    import re

    blank = re.compile(r"[ \t\n\r]*")
    decoder = json.JSONDecoder()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise JSONStreamError("not a regular file")
        text = codecs.getincrementaldecoder("utf-8")("strict")
        state = {"buf": "", "pos": 0, "eof": False}

        def fill() -> None:
            data = fh.read(chunk)
            state["eof"] = not data
            state["buf"] = state["buf"][state["pos"] :] + text.decode(data, final=not data)
            state["pos"] = 0

        def peek() -> str:
            while True:
                state["pos"] = blank.match(state["buf"], state["pos"]).end()
                if state["pos"] < len(state["buf"]) or state["eof"]:
                    return state["buf"][state["pos"] : state["pos"] + 1]
                fill()

        def value() -> Any:
            peek()
            while True:
                buf, pos = state["buf"], state["pos"]
                try:
                    obj, end = decoder.raw_decode(buf, pos)
                except ValueError:
                    obj, end = None, -1
                # A value ending exactly at the window's end may be cut (a number, a literal): read on.
                if end == -1 or (end >= len(buf) and not state["eof"]):
                    if state["eof"] or len(buf) - pos > max_value:
                        raise _Fallback
                    fill()
                    continue
                state["pos"] = end
                return obj

        def take(char: str) -> None:
            if peek() != char:
                raise _Fallback
            state["pos"] += 1

        top: dict[str, Any] = {}
        final: dict[str, Any] = {}
        totals = _Totals()
        saw_steps = False
        take("{")
        while peek() != "}":
            key = value()
            if not isinstance(key, str):
                raise _Fallback
            take(":")
            if key == "steps" and peek() == "[":
                saw_steps = True
                take("[")
                while peek() != "]":
                    step = value()
                    if isinstance(step, dict):
                        _add_step(totals, step)
                    if peek() == ",":
                        take(",")
                take("]")
            else:
                item = value()
                if key in ("session_id", "schema_version") and not isinstance(item, dict | list):
                    top[key] = item
                elif key == "agent" and isinstance(item, dict):
                    for field, name in (
                        ("name", "agent_name"),
                        ("version", "agent_version"),
                        ("model_name", "agent_model"),
                    ):
                        if field in item and not isinstance(item[field], dict | list):
                            top[name] = item[field]
                elif key == "final_metrics" and isinstance(item, dict):
                    final = {k: v for k, v in item.items() if not isinstance(v, dict | list)}
            if peek() == ",":
                take(",")
        take("}")
        if peek() != "" or not state["eof"]:
            raise _Fallback  # something after the document: not one JSON object
    return top, final, totals, saw_steps


def _add_step(totals: _Totals, step: dict[str, Any]) -> None:
    fields: dict[str, Any] = {}
    for where, name in _STEP_FIELDS.items():
        node: Any = step
        for part in where:
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None and not isinstance(node, dict | list):
            fields[name] = node
    calls = step.get("tool_calls")
    if isinstance(calls, list) and fields.get("source") != "user":
        for call in calls:
            if isinstance(call, dict):
                ident = _text(call.get("tool_call_id"))
                if ident is None:
                    totals.anonymous_tool_calls += 1
                else:
                    totals.tool_ids.add(ident)
    totals.add_step(fields)


def read_export(path: Path) -> Usage | None:
    """Return the usage in the ATIF export at ``path``, or ``None`` when there is no such file.

    A file that is not one complete, valid JSON object (a writer killed mid-write, garbage) gives a
    ``Usage`` with no figures and ``extra["atif_export"] == "unreadable"``: a half-read trajectory
    would undercount.

    Token semantics: ATIF defines ``prompt_tokens`` as the whole prompt, cached tokens included
    (``cached_tokens`` is "a subset of prompt_tokens"), so ``tokens_in = prompt_tokens`` and cache
    writes (``metrics.extra.cache_creation_input_tokens``) are only reported in ``extra``. Readers of
    Devin exports disagree on whether Devin follows that; when the file itself contradicts it
    (more cached than prompt tokens) the buckets can only be additive and are added up instead.
    Older exports carry ``metadata.metrics`` with Anthropic-style names (input excludes cache),
    which are added up the same way.
    """
    try:
        os.lstat(path)
    except OSError:
        return None
    try:
        try:
            top, final, totals, saw_steps = _fast_scan(path)
        except (_Fallback, ValueError, RecursionError):
            top, final, totals, saw_steps = _scan(path)  # the careful reader decides
    except (OSError, ValueError, RecursionError, MemoryError):
        return Usage(extra={"atif_export": "unreadable"})

    extra: dict[str, Any] = {"atif_export": "read"}
    for key, name in (
        ("session_id", "session_id"),
        ("schema_version", "atif_schema_version"),
        ("agent_version", "devin_version"),
    ):
        value = _text(top.get(key))
        if value is not None:
            extra[name] = value

    tokens_in = tokens_out = tokens_cached = None
    sums = totals.sums
    write = sums.get("cache_write")
    totals_in_final = [as_int(final.get(f"total_{k}_tokens")) for k in ("prompt", "completion", "cached")]
    if any(v is not None for v in totals_in_final):
        source, (prompt, tokens_out, cached) = "final_metrics", totals_in_final
    elif any(k in sums for k in ("prompt", "completion", "cached")):
        source, prompt, tokens_out, cached = "steps", sums.get("prompt"), sums.get("completion"), sums.get("cached")
    elif any(k.startswith("legacy_") for k in sums):
        source, prompt, tokens_out, cached = "metadata.metrics", None, sums.get("legacy_out"), None
    else:
        source = None
    if source in ("final_metrics", "steps"):
        extra["prompt_tokens"] = prompt
        extra["cached_tokens"] = cached
        tokens_cached = cached
        if prompt is not None and cached is not None and cached > prompt:
            tokens_in = prompt + cached + (write or 0)
            extra["prompt_tokens_semantics"] = "additive"
        else:
            tokens_in = prompt
            extra["prompt_tokens_semantics"] = "inclusive"
    elif source == "metadata.metrics":
        tokens_cached = sums.get("legacy_cache_read")
        write = sums.get("legacy_cache_write")
        if "legacy_in" in sums:
            tokens_in = sums["legacy_in"] + (tokens_cached or 0) + (write or 0)
        extra["prompt_tokens_semantics"] = "additive"
    if source is not None:
        extra["token_source"] = source
    if write is not None:
        extra["tokens_cache_write"] = write

    cost = as_float(final.get("total_cost_usd"))
    if cost is None and totals.cost is not None:
        cost = round(totals.cost, 10)  # a sum of per-step costs, without float noise
    if totals.credit is not None:
        extra["committed_credit_cost"] = round(totals.credit, 10)
    total_steps = as_int(final.get("total_steps"))
    if total_steps is not None:
        extra["total_steps"] = total_steps

    return Usage(
        model=totals.main_model() or _text(top.get("agent_model")),
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        tokens_cached=tokens_cached,
        cost_usd=cost,
        turns=totals.turns if saw_steps else None,
        tool_calls=len(totals.tool_ids) + totals.anonymous_tool_calls if saw_steps else None,
        extra=extra,
    )

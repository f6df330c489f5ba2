"""Read the usage opencode printed in an attempt's log (``run --format json``: one event per line).

Figures come from the ``step_finish`` events, one per model call of the session's agent loop:
``part.tokens{input, output, reasoning, cache{read, write}}`` and ``part.cost`` (USD, computed by opencode
from the model's configured price). opencode's ``input`` excludes cached tokens and its ``output`` excludes
reasoning, so by SPEC §3: ``tokens_in`` = Σ(input + cache.read + cache.write), ``tokens_cached`` = Σ cache.read,
``tokens_out`` = Σ(output + reasoning), ``turns`` = the number of ``step_finish`` events, ``tool_calls`` = the
distinct ``callID`` of ``tool_use`` events. No event names the model: it is read from opencode's own log lines
(``--print-logs``): ``message=stream providerID=P modelID=M ... small=false`` is a call of the main model.

Only lines that start with an event's own head are read (``{"type":"step_finish"``, ...): text the agent or a
tool wrote is escaped inside an event's JSON string and never starts a line. ``tool_use`` lines, which carry a
tool's whole output, are not decoded: their ``callID`` is read from the line's head.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aq_core.enginekit import as_float, as_int, iter_lines, loads
from aq_core.usage import Usage

STEP_FINISH = b'{"type":"step_finish"'
TOOL_USE = b'{"type":"tool_use"'
SESSION_HEAD = re.compile(rb'^\{"type":"[a-z_]+","timestamp":\d+,"sessionID":"(ses_[0-9A-Za-z]{1,64})"')
LOG_LINE = b"timestamp="
STREAM = re.compile(rb" message=stream providerID=(\S+) modelID=(\S+) .*?\bsmall=false\b")
CALL_ID = re.compile(rb'"part":\{"type":"tool","tool":"(?:[^"\\]|\\.){0,200}","callID":"((?:[^"\\]|\\.){1,200})"')


def parse(log_path: Path) -> Usage:
    """Return the figures of every ``step_finish`` in the log (absent ones stay ``None``)."""
    usage = Usage()
    sums: dict[str, int] = {}
    cost: float | None = None
    steps = 0
    calls: set[bytes] = set()
    session: str | None = None
    for line in iter_lines(log_path):
        if line.startswith(LOG_LINE):
            if b" message=stream " in line:
                stream = STREAM.search(line)
                if stream:
                    usage.model = f"{stream[1].decode('utf-8', 'replace')}/{stream[2].decode('utf-8', 'replace')}"
            continue
        if line.startswith(TOOL_USE):
            call = CALL_ID.search(line, 0, 4096)
            if call:
                calls.add(call[1])
            continue
        if not line.startswith(STEP_FINISH):
            if session is None and line.startswith(b'{"type":"'):
                head = SESSION_HEAD.match(line)
                session = head[1].decode() if head else None
            continue
        part = _part(line)
        if part is None:
            continue
        steps += 1
        if session is None and isinstance(part.get("sessionID"), str):
            session = part["sessionID"]
        tokens = part.get("tokens")
        if isinstance(tokens, dict):
            cache = tokens.get("cache") if isinstance(tokens.get("cache"), dict) else {}
            for key, value in (
                ("input", tokens.get("input")),
                ("output", tokens.get("output")),
                ("reasoning", tokens.get("reasoning")),
                ("cache_read", cache.get("read")),
                ("cache_write", cache.get("write")),
            ):
                number = as_int(value)
                if number is not None:
                    sums[key] = sums.get(key, 0) + number
        step_cost = as_float(part.get("cost"))
        if step_cost is not None:
            cost = (cost or 0.0) + step_cost
    if steps:
        usage.turns = steps
    if "input" in sums:
        usage.tokens_in = sums["input"] + sums.get("cache_read", 0) + sums.get("cache_write", 0)
        usage.tokens_cached = sums.get("cache_read", 0)
    if "output" in sums:
        usage.tokens_out = sums["output"] + sums.get("reasoning", 0)
    if steps or calls:
        usage.tool_calls = len(calls)
    if "cache_write" in sums:
        usage.extra["tokens_cache_write"] = sums["cache_write"]
    if "reasoning" in sums:
        usage.extra["tokens_reasoning"] = sums["reasoning"]
    if cost is not None:
        if cost > 0 or not (usage.tokens_in or usage.tokens_out):
            usage.cost_usd = round(cost, 10)
        else:
            # opencode prices a call at 0 when the model has no price in its config (a custom provider):
            # that is "not priced", not "free", so the cost is left to aq's estimate.
            usage.extra["cost_unpriced"] = True
    if session:
        usage.extra["session_id"] = session
    return usage


def _part(line: bytes) -> dict[str, Any] | None:
    event = loads(line)
    if event is None or event.get("type") != "step_finish":
        return None
    part = event.get("part")
    if not isinstance(part, dict):
        return None
    if isinstance(event.get("sessionID"), str):
        part.setdefault("sessionID", event["sessionID"])
    return part

"""Read the usage figures of a Gemini CLI attempt from its ``-o stream-json`` log.

Records: ``init`` (session id, requested model), ``message``, ``tool_use``, ``tool_result``, ``error`` and one
``result`` per process with ``stats {total_tokens, input_tokens, output_tokens, cached, input, tool_calls,
models{}}``. A process's stats cover that process only (a resumed session starts again from zero), so the
results of several processes in one log add up.

aq's conventions: ``tokens_in`` = ``input_tokens`` (the prompt, cache reads included; the Gemini API reports no
cache writes), ``tokens_cached`` = ``cached``, ``tokens_out`` = ``total_tokens - input_tokens``: stream-json's
``output_tokens`` leaves out the thinking tokens, which ``total_tokens`` (prompt + candidates + thoughts)
includes. The CLI prints no cost and no turn count: both stay absent (the core estimates the cost from the
engine's prices and marks it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aq_core.enginekit import as_int, iter_json
from aq_core.usage import Usage

_FIELDS = ("total_tokens", "input_tokens", "output_tokens", "cached")


def _model(stats: dict[str, Any]) -> str | None:
    """The model that did the work: the ``stats.models`` entry with the most tokens."""
    models = stats.get("models")
    if not isinstance(models, dict):
        return None
    best = None
    best_total = -1
    for name, figures in models.items():
        total = as_int(figures.get("total_tokens")) if isinstance(figures, dict) else None
        if isinstance(name, str) and name and (total or 0) > best_total:
            best, best_total = name, total or 0
    return best


def parse(log_path: Path) -> Usage:
    totals = dict.fromkeys(_FIELDS, 0)
    tool_calls = 0
    results = 0
    session = None
    model = None
    requested = None
    statuses: list[str] = []
    for obj in iter_json(log_path, prefix=b'{"type":'):
        kind = obj.get("type")
        if kind == "init":
            if isinstance(obj.get("session_id"), str):
                session = obj["session_id"]
            if isinstance(obj.get("model"), str) and obj["model"] != "auto":
                requested = obj["model"]
        elif kind == "result" and isinstance(obj.get("stats"), dict):
            stats = obj["stats"]
            values = {f: as_int(stats.get(f)) for f in _FIELDS}
            if values["input_tokens"] is None or values["total_tokens"] is None:
                continue
            results += 1
            for f in _FIELDS:
                totals[f] += values[f] or 0
            tool_calls += as_int(stats.get("tool_calls")) or 0
            model = _model(stats) if values["total_tokens"] else model or _model(stats)
            statuses.append(str(obj.get("status")))
    usage = Usage(model=model or requested)
    usage.extra["output_mode"] = "stream-json"
    usage.extra["complete"] = results > 0
    if session:
        usage.extra["session_id"] = session
    if not results:
        return usage
    usage.tokens_in = totals["input_tokens"]
    usage.tokens_cached = totals["cached"]
    usage.tokens_out = max(totals["total_tokens"] - totals["input_tokens"], totals["output_tokens"])
    usage.tool_calls = tool_calls
    usage.extra.update(
        tokens_output_visible=totals["output_tokens"],
        tokens_thoughts=usage.tokens_out - totals["output_tokens"],
        tokens_input_uncached=totals["input_tokens"] - totals["cached"],
        processes=results,
        result_status=statuses[-1],
    )
    return usage

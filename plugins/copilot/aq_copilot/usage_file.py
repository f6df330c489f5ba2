"""Read the usage file Copilot writes with ``--usage-output-file`` (a side file beside the attempt's log).

Copilot 1.0.102 prints no tokens in its JSONL (``result`` has none; ``assistant.usage`` is filtered out). The
file it writes at exit has them, exact and per model: ``modelMetrics.<model>{requests{count, cost},
usage{inputTokens, outputTokens, cacheReadTokens, cacheWriteTokens}}`` plus ``totalPremiumRequestCost`` and
``totalNanoAiu``; it is written even when the login fails. Its figures count the whole session (a resumed
session's earlier runs too), so they are marked ``session_cumulative`` and the core keeps only this attempt's
share. Checked against the scripted model server (Anthropic and OpenAI wire APIs): ``inputTokens`` includes cache
reads and cache writes, ``outputTokens`` includes reasoning (also given apart as ``reasoningTokens``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aq_core.enginekit import as_float, as_int
from aq_core.usage import Usage

SUFFIX = ".usage.json"
#: The file is one small JSON document; anything larger is not Copilot's.
MAX_BYTES = 4 << 20


def side_file(log_path: Path | str) -> Path:
    """Where the attempt whose log is ``log_path`` has Copilot write its usage file."""
    return Path(f"{log_path}{SUFFIX}")


def merge(usage: Usage, log_path: Path) -> Usage:
    """Take the token figures from the attempt's usage file when it has any; else keep the log's."""
    doc = _read(side_file(log_path))
    metrics = doc.get("modelMetrics") if doc is not None else None
    if not isinstance(metrics, dict):
        return usage
    sums = {"in": 0, "out": 0, "cached": 0, "write": 0, "requests": 0, "reasoning": 0}
    models: dict[str, dict[str, int]] = {}
    seen = False
    for model, entry in metrics.items():
        figures = entry.get("usage") if isinstance(entry, dict) else None
        if not isinstance(model, str) or not isinstance(figures, dict):
            continue
        row = {
            "in": as_int(figures.get("inputTokens")),
            "out": as_int(figures.get("outputTokens")),
            "cached": as_int(figures.get("cacheReadTokens")),
            "write": as_int(figures.get("cacheWriteTokens")),
        }
        requests = entry.get("requests") if isinstance(entry.get("requests"), dict) else {}
        row["requests"] = as_int(requests.get("count"))
        row["reasoning"] = as_int(figures.get("reasoningTokens"))
        if row["in"] is None and row["out"] is None:
            continue
        seen = True
        models[model] = {k: v for k, v in row.items() if v is not None}
        for key, value in row.items():
            sums[key] += value or 0
    if not seen:
        return usage
    usage.tokens_in = sums["in"]
    usage.tokens_out = sums["out"]
    usage.tokens_cached = min(sums["cached"], sums["in"])
    extra = usage.extra
    extra["tokens_cache_write"] = sums["write"]
    extra["model_calls"] = sums["requests"]
    extra["tokens_reasoning"] = sums["reasoning"]
    extra["models"] = models
    extra["tokens_source"] = "usage-output-file"
    extra["session_cumulative"] = True
    premium = as_float(doc.get("totalPremiumRequestCost"))
    if premium is not None:
        extra["premium_requests_cost"] = premium
    nano = as_int(doc.get("totalNanoAiu"))
    if nano:
        extra["ai_credits"] = nano / 1e9
    if usage.model is None:
        current = doc.get("currentModel")
        if isinstance(current, str) and current:
            usage.model = current
        elif len(models) == 1:
            usage.model = next(iter(models))
    return usage


def _read(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError:
        return None
    if len(data) > MAX_BYTES:
        return None
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None

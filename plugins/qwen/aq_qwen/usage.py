"""Read the usage figures of a Qwen Code attempt from its ``-o stream-json`` log.

Records: ``system/init`` (session id, model, ``qwen_code_version``), ``assistant`` (one per model call, with that
call's ``usage {input_tokens (cache reads included), output_tokens (reasoning included), cache_read_input_tokens,
total_tokens}``), ``user`` (tool results), ``stream_event`` and one ``result`` per process (``usage``,
``num_turns``, ``is_error``).

The figures are the sums over the ``assistant`` records (each counted once, by message id), not the ``result``'s
``usage``: that one also counts the background "managed-auto-memory-extractor" agent, which re-sends the whole
conversation after the turn (0.24.4 doubles a one-call session's usage this way) and whose calls are never
printed, and on a resumed session it restarts from the totals of the earlier processes. The job's own work is
what the assistant records show; the ``result``'s figures are kept in ``extra["reported_*"]``.

aq's conventions: ``tokens_in`` = Σ ``input_tokens`` (the prompt, cache reads included), ``tokens_cached`` =
Σ ``cache_read_input_tokens``, ``tokens_out`` = Σ ``output_tokens`` (reasoning included), ``turns`` = Σ the
processes' ``num_turns``, ``tool_calls`` = distinct ``tool_use`` blocks. No cost: the core estimates it from the
engine's prices and marks it.
"""

from __future__ import annotations

from pathlib import Path

from aq_core.enginekit import as_int, iter_json
from aq_core.usage import Usage


def parse(log_path: Path) -> Usage:
    seen: set[str] = set()
    tools: set[str] = set()
    tokens_in = tokens_cached = tokens_out = 0
    calls = 0
    turns = 0
    results = 0
    reported: dict[str, int] = {}
    model = session = version = None
    for obj in iter_json(log_path, prefix=b'{"type":'):
        kind = obj.get("type")
        if kind == "system" and obj.get("subtype") == "init":
            session = obj.get("session_id") if isinstance(obj.get("session_id"), str) else session
            model = obj.get("model") if isinstance(obj.get("model"), str) else model
            version = obj.get("qwen_code_version") if isinstance(obj.get("qwen_code_version"), str) else version
        elif kind == "assistant" and isinstance(obj.get("message"), dict):
            message = obj["message"]
            ident = message.get("id") or obj.get("uuid")
            if not isinstance(ident, str) or ident in seen:
                continue
            seen.add(ident)
            for block in message.get("content") or []:
                if isinstance(block, dict) and block.get("type") == "tool_use" and isinstance(block.get("id"), str):
                    tools.add(block["id"])
            usage = message.get("usage")
            if not isinstance(usage, dict):
                continue
            if (as_int(usage.get("input_tokens")) or 0) + (as_int(usage.get("output_tokens")) or 0) == 0:
                continue  # an error message shown as a reply ("[API Error: ...]") spent nothing
            calls += 1
            tokens_in += as_int(usage.get("input_tokens")) or 0
            tokens_cached += as_int(usage.get("cache_read_input_tokens")) or 0
            tokens_out += as_int(usage.get("output_tokens")) or 0
            if isinstance(message.get("model"), str):
                model = message["model"]
        elif kind == "result":
            results += 1
            turns += as_int(obj.get("num_turns")) or 0
            usage = obj.get("usage") if isinstance(obj.get("usage"), dict) else {}
            for key in ("input_tokens", "output_tokens", "cache_read_input_tokens"):
                value = as_int(usage.get(key))
                if value is not None:
                    reported["reported_" + key] = value
    out = Usage(model=model)
    out.extra.update(reported, output_mode="stream-json", complete=results > 0, model_calls=calls)
    if session:
        out.extra["session_id"] = session
    if version:
        out.extra["engine_version"] = version
    if calls or results:
        out.tokens_in, out.tokens_cached, out.tokens_out = tokens_in, tokens_cached, tokens_out
        out.tool_calls = len(tools)
    if results:
        out.turns = turns
    return out

"""Read the usage of one Claude Code run from its log, streaming (engine-formats §1, §6).

Output modes, told apart by what the log holds:

* ``stream-json`` (what aq launches): one JSON object per line; ``system/init`` starts a process (a segment),
  ``assistant`` frames carry per-message usage, ``result`` carries the process's cumulative totals.
* ``json``: a single ``result`` object, the last line of the run.
* ``json`` with ``--verbose``: one line holding a JSON array of every message, ``result`` last.
* ``text``: the answer only; no usage at all.

Only top-level records of these shapes are trusted. Lines are pre-filtered by their first bytes
(``{"type":"assistant"`` ...) before anything is decoded: ``user`` frames, which hold tool results and the
bulk of a log's bytes, are never decoded, so JSON an agent printed or read cannot be mistaken for a record.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from aq_core.enginekit import as_float, as_int, iter_lines
from aq_core.usage import Usage

#: From this CLI version a resumed process restores the session's saved totals (engine-formats §1.5).
CUMULATIVE_SINCE = (2, 1, 277)
#: The model Claude Code names on messages it made up itself (errors, "Not logged in"): not a model.
SYNTHETIC_MODEL = "<synthetic>"
TOOL_BLOCKS = ("tool_use", "server_tool_use", "mcp_tool_use")

_TYPE = b'{"type":"'
_VERSION = re.compile(r"\d+(?:\.\d+)*")
# The first block of a frame's content, when it is a tool call: {"type":"tool_use","id":"toolu_..."
_FIRST_TOOL = re.compile(rb'"content":\[\{"type":"(?:server_|mcp_)?tool_use","id":"([^"\\]+)"')
_NOISE_PREFIXES = (b"aq:", b"Warning:", b"(node:", b"(Use `node", b"DeprecationWarning", b"ExperimentalWarning")
_TOKEN_KEYS = ("tokens_in", "tokens_out", "tokens_cached", "tokens_cache_write", "tokens_input_uncached")


def version_tuple(text: Any) -> tuple[int, ...] | None:
    """Return ``"2.1.197"`` as ``(2, 1, 197)``; None when it is not a dotted version."""
    if not isinstance(text, str):
        return None
    match = _VERSION.match(text.strip())
    return tuple(int(part) for part in match.group(0).split(".")) if match else None


def _cache_write(usage: dict[str, Any]) -> int | None:
    """Cache-creation tokens, from the nested TTL split when the top-level figure is 0 (a fixed CLI bug)."""
    top = as_int(usage.get("cache_creation_input_tokens"))
    nested = usage.get("cache_creation")
    if isinstance(nested, dict):
        parts = [as_int(v) for k, v in nested.items() if isinstance(k, str) and k.endswith("_input_tokens")]
        total = sum(p for p in parts if p is not None)
        if total and not top:
            return total
    return top


def _message_usage(usage: Any) -> tuple[int, int, int, int] | None:
    """(input, cache write, cache read, output) of one API message's ``usage``; None if it has none."""
    if not isinstance(usage, dict):
        return None
    values = (
        as_int(usage.get("input_tokens")),
        _cache_write(usage),
        as_int(usage.get("cache_read_input_tokens")),
        as_int(usage.get("output_tokens")),
    )
    if all(v is None for v in values):
        return None
    return tuple(v or 0 for v in values)  # type: ignore[return-value]


def result_figures(obj: dict[str, Any]) -> dict[str, Any]:
    """The totals of one ``result`` record, named as aq names them (absent figures left out)."""
    figures: dict[str, Any] = {}
    model_usage = obj.get("modelUsage")
    per_model = {}
    if isinstance(model_usage, dict):
        per_model = {k: v for k, v in model_usage.items() if isinstance(k, str) and k and isinstance(v, dict)}
    if per_model:
        sums = dict.fromkeys(("inputTokens", "outputTokens", "cacheReadInputTokens", "cacheCreationInputTokens"), 0)
        seen = False
        best: tuple[float, int, str] | None = None
        raw: dict[str, dict[str, Any]] = {}
        for name, entry in per_model.items():
            values = {key: as_int(entry.get(key)) for key in sums}
            seen = seen or any(v is not None for v in values.values())
            for key, value in values.items():
                sums[key] += value or 0
            cost = as_float(entry.get("costUSD"))
            raw[name] = {k: v for k, v in values.items() if v is not None}
            if cost is not None:
                raw[name]["costUSD"] = cost
            rank = (cost or 0.0, values["outputTokens"] or 0, name)
            if name != SYNTHETIC_MODEL and (best is None or rank[:2] > best[:2]):
                best = rank
        if seen:
            figures["tokens_in"] = sums["inputTokens"] + sums["cacheCreationInputTokens"] + sums["cacheReadInputTokens"]
            figures["tokens_out"] = sums["outputTokens"]
            figures["tokens_cached"] = sums["cacheReadInputTokens"]
            figures["tokens_cache_write"] = sums["cacheCreationInputTokens"]
            figures["tokens_input_uncached"] = sums["inputTokens"]
        if best is not None:
            figures["model"] = best[2]
        figures["model_usage"] = raw
    if "tokens_in" not in figures:
        # No per-model figures (older builds, or nothing was called): the main loop's usage is all there is.
        usage = _message_usage(obj.get("usage"))
        if usage is not None:
            inp, write, read, out = usage
            figures.update(
                tokens_in=inp + write + read,
                tokens_out=out,
                tokens_cached=read,
                tokens_cache_write=write,
                tokens_input_uncached=inp,
            )
    for key in ("total_cost_usd", "cost_usd", "total_cost"):  # renamed twice across versions (engine-formats §1.2)
        cost = as_float(obj.get(key))
        if cost is not None:
            figures["cost_usd"] = cost
            break
    else:
        # No session total: the per-model costs (`modelUsage.<m>.costUSD`) are the CLI's own figures too.
        costs = [v["costUSD"] for v in figures.get("model_usage", {}).values() if "costUSD" in v]
        if costs:
            figures["cost_usd"] = round(sum(costs), 10)
    turns = as_int(obj.get("num_turns"))
    if turns is not None:
        figures["num_turns"] = turns
    return figures


class _Segment:
    """One engine process in the log: from one ``system/init`` to the next."""

    __slots__ = (
        "session_id",
        "version",
        "model",
        "results",
        "last_result",
        "seen",
        "messages",
        "main_ids",
        "last_model",
    )

    def __init__(self, session_id: str | None = None, version: tuple[int, ...] | None = None, model=None) -> None:
        self.session_id = session_id
        self.version = version
        self.model = model
        self.results = 0
        self.last_result: dict[str, Any] | None = None
        self.seen: set[str] = set()  # every message id of the segment (main agent and subagents)
        self.messages: dict[str, tuple[int, int, int, int]] = {}
        self.main_ids: set[str] = set()
        self.last_model: str | None = None

    @property
    def cumulative(self) -> bool:
        return self.version is not None and self.version >= CUMULATIVE_SINCE


class _Scan:
    """One pass over the log. Each segment is folded into the totals when the next begins, so memory stays flat
    however many processes the log holds."""

    def __init__(self) -> None:
        self.current = _Segment()
        self.tool_ids: set[str] = set()
        self.main_tool_ids: set[str] = set()
        self.stream = False  # saw stream records (init, assistant, user): the log is stream-json or a json array
        self.array = False
        self.standalone: tuple[int, dict[str, Any]] | None = None  # (line number, record) of a bare result line
        self.last_content = -1  # line number of the last line that is neither blank nor known noise
        # Totals of the segments closed so far.
        self.totals: dict[str, Any] = {}
        self.turns: int | None = None
        self.used = 0
        self.complete = True
        self.out_lower_bound = 0
        self.previous: dict[str, dict[str, Any]] = {}  # session id -> its last cumulative totals (2.1.277+)
        self.session_totals: dict[str, dict[str, Any]] = {}
        self.last_result: dict[str, Any] | None = None
        self.assistant_messages = 0
        self.model_init: str | None = None  # latest model named by the init of a segment with usage
        self.model_result: str | None = None
        self.model_frames: str | None = None
        self.any_init_model: str | None = None
        self.session: str | None = None
        self.version: tuple[int, ...] | None = None
        self.closed = 0

    # -- records --------------------------------------------------------------------------------------------

    def record(self, obj: Any, line_no: int) -> None:
        if not isinstance(obj, dict):
            return
        kind = obj.get("type")
        if kind == "assistant":
            self.assistant(obj)
        elif kind == "result":
            self.result(obj, line_no)
        elif kind == "system":
            if obj.get("subtype") == "init":
                self.init(obj)
        elif kind == "user":
            self.stream = True

    def init(self, obj: dict[str, Any]) -> None:
        self.stream = True
        model = obj.get("model")
        session = obj.get("session_id")
        segment = _Segment(
            session_id=session if isinstance(session, str) and session else None,
            version=version_tuple(obj.get("claude_code_version")),
            model=model if isinstance(model, str) and model and model != SYNTHETIC_MODEL else None,
        )
        if segment.model:
            self.any_init_model = segment.model
        first = self.current
        if self.closed or first.results or first.seen or first.session_id:
            self._close(first)
        self.current = segment  # (what came before the first init, hook events only, is dropped)

    def assistant(self, obj: dict[str, Any]) -> None:
        self.stream = True
        message = obj.get("message")
        if not isinstance(message, dict):
            return
        segment = self.current
        main = obj.get("parent_tool_use_id") is None
        msg_id = message.get("id")
        if isinstance(msg_id, str) and msg_id and msg_id not in segment.seen:
            # Claude Code prints one frame per content block, each repeating the message's usage: count it once.
            segment.seen.add(msg_id)
            if main:
                segment.main_ids.add(msg_id)
            usage = _message_usage(message.get("usage"))
            if usage is not None:
                segment.messages[msg_id] = usage
            model = message.get("model")
            if main and isinstance(model, str) and model and model != SYNTHETIC_MODEL:
                segment.last_model = model
        content = message.get("content")
        if isinstance(content, list):
            for block in content:
                if isinstance(block, dict) and block.get("type") in TOOL_BLOCKS:
                    tool_id = block.get("id")
                    if isinstance(tool_id, str) and tool_id:
                        self.tool_ids.add(tool_id)
                        if main:
                            self.main_tool_ids.add(tool_id)

    def repeated_frame(self, line: bytes) -> bool:
        """Handle a further frame of a message already counted without decoding it; False when it must be.

        Such a frame adds nothing but, perhaps, one tool call. A quote can only appear escaped inside a JSON
        string, so ``tool_use"`` occurs in the line only where a block (or a tool's input object) really has
        that type: with exactly one occurrence, as the frame's first content block, its id is the tool call's.
        Anything else is decoded, so this shortcut never changes a figure.
        """
        start = line.find(b'"message":{')
        if start < 0:
            return False
        content = line.find(b'"content":[', start)
        if content < 0:
            return False
        at = line.find(b'"id":"', start, content)
        if at < 0:
            return False
        end = line.find(b'"', at + 6, content)
        raw = line[at + 6 : end]
        if end < 0 or b"\\" in raw:
            return False
        msg_id = raw.decode("utf-8", "replace")
        segment = self.current
        if msg_id not in segment.seen:
            return False
        first = line.find(b'tool_use"', content)
        if first < 0:
            return line.find(b'tool_use"', 0, content) < 0
        if line.find(b'tool_use"', first + 9) >= 0 or line.find(b'tool_use"', 0, content) >= 0:
            return False
        match = _FIRST_TOOL.match(line, content)
        if match is None:
            return False
        tool_id = match.group(1).decode("utf-8", "replace")
        self.tool_ids.add(tool_id)
        if msg_id in segment.main_ids:
            self.main_tool_ids.add(tool_id)
        return True

    def result(self, obj: dict[str, Any], line_no: int) -> None:
        segment = self.current
        figures = result_figures(obj)
        session = obj.get("session_id")
        if isinstance(session, str) and session:
            figures["session_id"] = session
        # 2.1.328 says why the run ended (`terminal_reason`: completed, api_error, ...) and which API error stopped
        # it (`api_error_status` 429, `api_error_type` rate_limit_error): kept for the record.
        for key in ("subtype", "is_error", "terminal_reason", "api_error_status", "api_error_type"):
            value = obj.get(key)
            if isinstance(value, str | bool | int) and not (key == "api_error_status" and isinstance(value, bool)):
                figures[key] = value
        segment.results += 1
        segment.last_result = figures
        self.standalone = (line_no, figures)

    def array_line(self, items: list[Any], line_no: int) -> None:
        self.array = True
        for item in items:
            self.record(item, line_no)

    # -- totals -----------------------------------------------------------------------------------------------

    def _close(self, segment: _Segment) -> None:
        """Fold a finished segment into the totals (engine-formats §6 rule 5)."""
        self.closed += 1
        session = segment.session_id
        result = segment.last_result
        if session is None and result is not None:
            session = result.get("session_id")
        if session:
            self.session = session
        if segment.version is not None:
            self.version = segment.version
        if result is None and not segment.seen:
            return
        self.used += 1
        self.assistant_messages += len(segment.main_ids)
        if result is not None:
            self.last_result = result
            figures = {k: result[k] for k in (*_TOKEN_KEYS, "cost_usd") if k in result}
            if segment.cumulative and session:
                # A resumed process restores the session's totals: only what it added counts.
                before = self.previous.get(session, {})
                self.previous[session] = dict(figures)
                delta = {k: max(v * 0, v - before.get(k, 0)) for k, v in figures.items()}  # a cost stays a float
            else:
                delta = figures
            if session:
                self.session_totals[session] = figures
            if segment.results == 1 and not segment.cumulative and "num_turns" in result:
                turns: int | None = result["num_turns"]
            elif segment.main_ids:
                turns = len(segment.main_ids)
            else:
                turns = result.get("num_turns")
            if result.get("model"):
                self.model_result = result["model"]
        else:
            # Killed before its result: input and cache figures of each distinct message are final; its
            # output figures are placeholders (engine-formats §1.5), so output and cost stay unknown.
            self.complete = False
            inp = write = read = out = 0
            for m_inp, m_write, m_read, m_out in segment.messages.values():
                inp, write, read, out = inp + m_inp, write + m_write, read + m_read, out + m_out
            self.out_lower_bound += out
            delta = {}
            if segment.messages:
                delta = {
                    "tokens_in": inp + write + read,
                    "tokens_cached": read,
                    "tokens_cache_write": write,
                    "tokens_input_uncached": inp,
                }
            if segment.cumulative and session and delta:
                before = self.previous.setdefault(session, {})
                for key, value in delta.items():
                    before[key] = before.get(key, 0) + value
            turns = len(segment.main_ids) if segment.main_ids else None
        for key, value in delta.items():
            self.totals[key] = self.totals.get(key, 0) + value
        if turns is not None:
            self.turns = (self.turns or 0) + turns
        if segment.model:
            self.model_init = segment.model
        if segment.last_model:
            self.model_frames = segment.last_model

    def usage(self) -> Usage:
        if not self.stream:
            # A bare result (json mode) is the run's last line; one followed by more text is an answer that
            # quotes one (text mode), not the engine's record.
            segment = self.current
            segment.results, segment.last_result = 0, None
            if self.standalone is not None and self.standalone[0] >= self.last_content:
                segment.results, segment.last_result = 1, self.standalone[1]
        self._close(self.current)
        usage = Usage()
        extra = usage.extra
        if not self.used:
            extra["output_mode"] = "stream-json" if self.stream else "text"
            if self.stream:
                usage.model = self.any_init_model
                usage.tool_calls = len(self.tool_ids)
            self._session_extra(usage)
            return usage

        totals = self.totals
        usage.tokens_in = totals.get("tokens_in")
        usage.tokens_out = totals.get("tokens_out")
        usage.tokens_cached = totals.get("tokens_cached")
        cost = totals.get("cost_usd")
        usage.cost_usd = round(cost, 10) if cost is not None else None
        usage.turns = self.turns
        if self.stream:
            usage.tool_calls = len(self.tool_ids)
        usage.model = self.model_init or self.model_result or self.model_frames

        extra["output_mode"] = "json-verbose" if self.array else "stream-json" if self.stream else "json"
        for key in ("tokens_cache_write", "tokens_input_uncached"):
            if key in totals:
                extra[key] = totals[key]
        extra["segments"] = self.used
        extra["complete"] = self.complete
        if not self.complete and self.out_lower_bound:
            extra["tokens_out_lower_bound"] = self.out_lower_bound + totals.get("tokens_out", 0)
        if self.stream:
            extra["assistant_messages"] = self.assistant_messages
            extra["tool_calls_main"] = len(self.main_tool_ids)
        last = self.last_result
        if last is not None:
            for key in ("subtype", "is_error"):
                if key in last:
                    extra["result_" + key] = last[key]
            for key in ("terminal_reason", "api_error_status", "api_error_type"):
                if key in last:
                    extra[key] = last[key]
            for key in ("num_turns", "model_usage"):
                if key in last:
                    extra[key] = last[key]
        if self.session_totals:
            extra["session_totals"] = self.session_totals
        self._session_extra(usage)
        return usage

    def _session_extra(self, usage: Usage) -> None:
        if self.session:
            usage.extra["session_id"] = self.session
        if self.version is not None:
            usage.extra["engine_version"] = ".".join(str(p) for p in self.version)
        if usage.extra.get("output_mode") != "text":
            usage.extra["session_cumulative"] = self.version is not None and self.version >= CUMULATIVE_SINCE


def parse_log(path: Path, fast: bool = True) -> Usage:
    """Return the usage figures of one Claude Code log (every mode; see the module docstring).

    ``fast=False`` decodes every assistant frame (the tests check both ways give the same figures).
    """
    scan = _Scan()
    loads = json.loads
    for line_no, line in enumerate(iter_lines(path)):
        if line[:9] == _TYPE:
            # Claude writes compact JSON with "type" first: dispatch on the type's first bytes, decode only the
            # records that carry usage.
            tag = line[9:20]
            if tag.startswith(b"assistant"):
                scan.stream = True
                if fast and scan.repeated_frame(line):
                    scan.last_content = line_no
                    continue
            elif tag.startswith(b"result"):
                pass
            elif tag.startswith(b"user"):
                scan.stream = True
                scan.last_content = line_no
                continue
            elif tag.startswith(b"system"):
                scan.last_content = line_no
                if b'"init"' not in line:
                    continue
            else:
                scan.last_content = line_no
                continue
            scan.last_content = line_no
            try:
                obj = loads(line)
            except ValueError:
                continue
            scan.record(obj, line_no)
            continue
        stripped = line.strip()
        if not stripped:
            continue
        first = stripped[:1]
        if first == b"{" or first == b"[":
            scan.last_content = line_no
            try:
                obj = loads(stripped)
            except ValueError:
                continue
            if isinstance(obj, list):
                scan.array_line(obj, line_no)
            else:
                scan.record(obj, line_no)
            continue
        if not stripped.startswith(_NOISE_PREFIXES):
            scan.last_content = line_no
    return scan.usage()

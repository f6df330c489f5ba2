"""Read the usage of one Copilot CLI attempt from its log: JSONL events, OpenTelemetry spans, or the exit summary.

One pass over the log. Each line is sorted by its first bytes; only the few record kinds that carry figures
are decoded, so a log of hundreds of MB streams at hundreds of MB/s in constant memory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aq_core.enginekit import as_float, as_int, iter_lines, loads
from aq_core.usage import Usage

_TYPE = b'{"type":"'
_TYPE_LEN = len(_TYPE)
# ``tool.execution_start`` lines can be large (a created file's text is in ``arguments``): read the id from the
# head when the CLI's own key order puts it first, as 1.0.102 does.
_TOOL_START_HEAD = re.compile(rb'\{"type":"tool\.execution_start","data":\{"toolCallId":"((?:[^"\\]|\\.){1,200})"')
_CHAT_SPAN = b'"name":"chat '
_SUB_MARKERS = (b'"parentToolCallId":"', b'"agentId":"')
_ANSI = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]")

# -- text exit summary ---------------------------------------------------------------------------------------
_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_N = rf"(?:{_NUM})\s*[kKmMbB]?"
_NUM_RE = re.compile(rf"({_NUM})\s*([kKmMbB]?)")
_MULT = {"": 1, "k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6, "b": 1e9, "B": 1e9}

# Layout A (0.0.333 .. end of 2025) and B (Jan .. Apr 2026): labelled header lines, then one row per model.
_A_B_LINE = re.compile(
    r"^(?:Total usage est:\s+(?P<prem>[\d.]+) Premium requests?"
    r"|Total duration \(API\):\s+(?P<api>.+)"
    r"|API time spent:\s+(?P<api2>.+)"
    r"|Total duration \(wall\):\s+(?P<wall>.+)"
    r"|Total session time:\s+(?P<wall2>.+)"
    r"|Total code changes:\s+(?:(?P<add>\d+) lines? added, (?P<rem>\d+) lines? removed|\+(?P<add2>\d+) -(?P<rem2>\d+))"
    r"|(?P<rows>Usage by model:|Breakdown by AI model:))\s*$"
)
_ROW = re.compile(
    rf"^\s+(?P<model>[^\s(),]+)\s+(?P<inp>{_N})\s+(?:input|in),\s*(?P<out>{_N})\s+(?:output|out)"
    rf"(?:,\s*(?P<cr>{_N})\s+(?:cache read|cached))?"
    rf"(?:,\s*(?P<cw>{_N})\s+(?:cache write|cache written|cache creation))?"
    rf"(?:,\s*(?P<rs>{_N})\s+reasoning)?"
    r"\s*(?:\(Est\.\s*(?P<prem>[\d.]+)\s+Premium requests?\))?\s*$"
)
# Layout C (1.0.24+) and the 1.0.102 layout: a label column, then the value.
_C_LINE = re.compile(
    r"^(?:Changes\s+\+(?P<add>\d+)\s+-(?P<rem>\d+)"
    r"|Requests\s+(?P<prem>[\d.]+)\s+Premium\b(?:\s*\((?P<api>[^)]*)\))?.*"
    r"|AI Credits\s+(?P<credits>[\d.,]+)\b.*"
    r"|Duration\s+(?P<dur>\d[\dhms. ]*)"
    r"|Tokens\s+(?P<tokens>.*[↑↓].*)"
    r"|Resume\s+copilot\s+--resume[= ](?P<resume>\S+))\s*$"
)
_RESUME_HINT = re.compile(r"^Resume this session with\s+copilot\s+--resume[= ](?P<resume>\S+)\s*$")
_PAREN_ITEM = re.compile(rf"({_N})\s+(cached|cache read|cache write|cache written|written|reasoning)\b")
_BARE_ITEM = re.compile(rf"^({_N})\s*\((cached|cache read|cache write|cache written|written|reasoning)\)$")
# Summary lines start with one of these labels; a text line that starts with none of the first bytes below can
# be no summary line, fence or core note, and only ends a summary-looking block (the fast path).
_LABELS = (b"Total ", b"API time", b"Usage by", b"Breakdown", b"Changes", b"Requests", b"AI Credits", b"Duration")
_LABELS += (b"Tokens", b"Resume")
_ROW_HEADERS = (b"Usage by model:", b"Breakdown by AI model:")
_SLOW_FIRST = frozenset(b"TAUBCRD`~ \t>\r\x1ba")


def _num(text: str) -> int | None:
    match = _NUM_RE.fullmatch(text.strip())
    if not match:
        return None
    return int(round(float(match.group(1).replace(",", "")) * _MULT[match.group(2)]))


class _Summary:
    """One candidate exit summary block (text mode)."""

    __slots__ = ("fields", "rows", "in_rows", "layout")

    def __init__(self) -> None:
        self.fields: dict[str, Any] = {}
        self.rows: list[dict[str, Any]] = []
        self.in_rows = False
        self.layout = ""

    def feed(self, text: str) -> bool:
        """Take one line; return False when it is no summary line."""
        if self.in_rows and text[:1] in (" ", "\t"):
            row = _ROW.match(text)
            if row:
                self.rows.append(row.groupdict())
                return True
        match = _A_B_LINE.match(text)
        if match:
            self.layout = self.layout or "A/B"
            self.in_rows = bool(match.group("rows"))
            self._take_ab(match)
            return True
        match = _C_LINE.match(text) or _RESUME_HINT.match(text)
        if match:
            self.in_rows = False
            self._take_c(match.groupdict())
            return True
        return False

    def _take_ab(self, m: re.Match[str]) -> None:
        f = self.fields
        if m.group("prem"):
            f["premium_requests"] = as_float(float(m.group("prem")))
        for key, names in (("api_duration", ("api", "api2")), ("wall_duration", ("wall", "wall2"))):
            for name in names:
                if m.group(name):
                    f[key] = m.group(name).strip()
        add, rem = m.group("add") or m.group("add2"), m.group("rem") or m.group("rem2")
        if add is not None:
            f["lines_added"], f["lines_removed"] = int(add), int(rem)

    def _take_c(self, g: dict[str, str | None]) -> None:
        f = self.fields
        if g.get("add") is not None:
            f["lines_added"], f["lines_removed"] = int(g["add"]), int(g["rem"])
        if g.get("prem"):
            f["premium_requests"] = float(g["prem"])
            if g.get("api"):
                f["api_duration"] = g["api"].strip()
        if g.get("credits"):
            f["ai_credits"] = float(g["credits"].replace(",", ""))
        if g.get("dur"):
            f["wall_duration"] = g["dur"].strip()
        if g.get("resume"):
            f["session_id"] = g["resume"].strip("\"'")
        if g.get("tokens"):
            self._take_tokens(g["tokens"])

    def _take_tokens(self, text: str) -> None:
        f = self.fields
        # 1.0.52+ puts cached/reasoning in parentheses after the arrow figure; layout C lists them as parts.
        self.layout = "1.0.52+" if "(" in text and re.search(r"\(\s*" + _N + r"\s+\w", text) else "C"
        for part in text.split("•"):
            part = part.strip()
            head = part[:1]
            if head in ("↑", "↓"):
                match = _NUM_RE.match(part[1:].strip())
                value = _num(match.group(0)) if match else None
                if value is not None:
                    f["in" if head == "↑" else "out"] = value
                paren = part.find("(")
                items = _PAREN_ITEM.findall(part[paren:]) if paren != -1 else []
            else:
                bare = _BARE_ITEM.match(part)
                items = [bare.groups()] if bare else []
            for number, label in items:
                value = _num(number)
                if value is None:
                    continue
                key = {"cached": "cached", "cache read": "cached", "reasoning": "reasoning"}.get(label, "cache_write")
                f[key] = value


class _Parser:
    def __init__(self) -> None:
        self.turns = 0
        self.turn_ids: set[str] = set()
        self.tool_ids: set[str] = set()
        self.main_model: str | None = None
        self.start_model: str | None = None
        self.msg_out = 0
        self.msg_out_seen = False
        self.result: dict[str, Any] | None = None
        self.version: str | None = None
        self.spans: set[str] = set()
        self.otel: dict[str, dict[str, float]] = {}
        self.calls: dict[str, dict[str, float]] = {}
        self.call_ids: set[str] = set()
        self.checkpoint: list[Any] | None = None
        self.summary: list[bytes] | None = None  # the open summary-looking block, raw lines
        self.fenced: list[bytes] | None = None  # the same inside a code fence
        self.in_fence = False
        self.rows_open = False

    # -- JSON records ---------------------------------------------------------------------------------------

    def json_line(self, line: bytes) -> None:
        end = line.find(b'"', _TYPE_LEN)
        kind = line[_TYPE_LEN:end]
        if kind == b"span":
            if _CHAT_SPAN in line[:400]:
                self._span(line)
            elif self.version is None:
                self._version(line)
        elif kind == b"tool.execution_start":
            head = _TOOL_START_HEAD.match(line)
            if head:
                self.tool_ids.add(head.group(1).decode("utf-8", "replace"))
            else:
                data = _data(loads(line))
                if data is not None and isinstance(data.get("toolCallId"), str):
                    self.tool_ids.add(data["toolCallId"])
        elif kind == b"assistant.turn_end":
            obj = loads(line)
            data = _data(obj)
            if data is None or obj.get("agentId") or data.get("parentToolCallId"):
                return  # a subagent's loop, not the main agent's
            turn = data.get("turnId")
            if isinstance(turn, str | int) and str(turn) not in self.turn_ids:
                self.turn_ids.add(str(turn))
                self.turns += 1
        elif kind == b"assistant.message":
            self._message(line)
        elif kind == b"result":
            obj = loads(line)
            if obj is not None:
                self.result = obj
                self.turn_ids = set()  # turn ids restart with each process (a new segment)
        elif kind == b"session.tools_updated":
            data = _data(loads(line))
            if data is not None and isinstance(data.get("model"), str) and data["model"]:
                self.start_model = data["model"]
        elif kind == b"assistant.usage":
            self._assistant_usage(loads(line))
        elif kind == b"session.usage_checkpoint":
            data = _data(loads(line))
            if data is not None and isinstance(data.get("providerModelMetrics"), list):
                self.checkpoint = data["providerModelMetrics"]

    def _message(self, line: bytes) -> None:
        # The model sits before the content and the tool requests; a key inside the content is escaped (\")
        # and cannot match, so the head is read without decoding a possibly huge answer.
        sub = any(marker in line for marker in _SUB_MARKERS)
        at = line.find(b'"model":"')
        requests = line.find(b'"toolRequests":')
        model: str | None = None
        if at != -1 and (requests == -1 or at < requests):
            stop = line.find(b'"', at + 9)
            raw = line[at + 9 : stop]
            if stop != -1 and b"\\" not in raw and 0 < len(raw) <= 200:
                model = raw.decode("utf-8", "replace")
        tokens_at = line.rfind(b'"outputTokens":')
        if (model is None and at != -1) or tokens_at != -1:
            data = _data(loads(line))
            if data is None:
                return
            model = data.get("model") if isinstance(data.get("model"), str) and data.get("model") else model
            out = as_int(data.get("outputTokens"))
            if out is not None:
                self.msg_out += out
                self.msg_out_seen = True
        if model and not sub:
            self.main_model = model

    def _assistant_usage(self, obj: dict[str, Any] | None) -> None:
        data = _data(obj)
        if data is None:
            return
        event_id = obj.get("id") if obj is not None else None
        if isinstance(event_id, str):
            if event_id in self.call_ids:
                return
            self.call_ids.add(event_id)
        model = data.get("model") if isinstance(data.get("model"), str) else "?"
        bucket = self.calls.setdefault(model, {})
        for key, name in (
            ("in", "inputTokens"),
            ("out", "outputTokens"),
            ("cached", "cacheReadTokens"),
            ("cache_write", "cacheWriteTokens"),
            ("reasoning", "reasoningTokens"),
        ):
            value = as_int(data.get(name))
            if value is not None:
                bucket[key] = bucket.get(key, 0) + value
        bucket["calls"] = bucket.get("calls", 0) + 1
        cost = as_float(data.get("cost"))
        if cost is not None:
            bucket["premium"] = bucket.get("premium", 0.0) + cost

    def _span(self, line: bytes) -> None:
        obj = loads(line)
        if obj is None:
            return
        span_id = obj.get("spanId")
        if isinstance(span_id, str):
            if span_id in self.spans:
                return
            self.spans.add(span_id)
        attrs = obj.get("attributes")
        if not isinstance(attrs, dict):
            return
        if self.version is None:
            self._version_from(obj)
        figures: dict[str, int] = {}
        for key, names in _SPAN_FIELDS:
            for name in names:
                value = as_int(attrs.get(name))
                if value is not None:
                    figures[key] = value
                    break
        if not figures:
            return  # a failed call (429, 5xx) reports no usage: it says nothing about tokens
        model = attrs.get("gen_ai.response.model") or attrs.get("gen_ai.request.model")
        model = model if isinstance(model, str) and model else "?"
        bucket = self.otel.setdefault(model, {})
        for key, value in figures.items():
            bucket[key] = bucket.get(key, 0) + value
        cost = as_float(attrs.get("github.copilot.cost"))
        if cost is not None:
            bucket["premium"] = bucket.get("premium", 0.0) + cost
        nano = as_float(attrs.get("github.copilot.nano_aiu"))
        if nano is not None:
            bucket["nano_aiu"] = bucket.get("nano_aiu", 0.0) + nano
        bucket["calls"] = bucket.get("calls", 0) + 1

    def _version(self, line: bytes) -> None:
        at = line.find(b'"service.version":"')
        if at != -1:
            stop = line.find(b'"', at + 19)
            raw = line[at + 19 : stop]
            if stop != -1 and 0 < len(raw) <= 40 and b"\\" not in raw:
                self.version = raw.decode("utf-8", "replace")

    def _version_from(self, obj: dict[str, Any]) -> None:
        resource = obj.get("resource")
        attrs = resource.get("attributes") if isinstance(resource, dict) else None
        version = attrs.get("service.version") if isinstance(attrs, dict) else None
        if isinstance(version, str) and version:
            self.version = version

    # -- text lines -----------------------------------------------------------------------------------------

    def text_line(self, line: bytes) -> None:
        """Handle a text line that may matter: a summary label, a fence, indentation, a core note.

        Summary-looking lines are only collected here; the block that is still open at the end of the log is
        the one parsed (``_final_summary``), so quoted or early look-alikes cost a list append.
        """
        if line[0] == 27:
            line = _ANSI.sub(b"", line)
        indented = line[:1] in (b" ", b"\t", b">", b"\r")
        if indented and b"```" not in line and b"~~~" not in line:
            # The timeline's "  │ ..." lines: no fence, so only a model row of layout A/B can matter.
            if self.rows_open and line[:1] in (b" ", b"\t") and line.strip():
                self._block().append(line)
            elif line.strip():
                self._set(None)
            return
        stripped = line.lstrip(b" \t>\r") if indented else line
        if not stripped:
            return  # blank (also "\r" of a CRLF log): blank lines may sit inside and after the summary
        if stripped.startswith((b"```", b"~~~")):
            self.in_fence = not self.in_fence
            self.summary = self.fenced = None
            self.rows_open = False
            return
        if line.startswith(b"aq:"):
            return  # the core's own notes may follow the summary
        if line.startswith(_LABELS):
            block = self._block()
            block.append(line)
            if len(block) > 256:
                del block[:128]  # no exit summary is this long: keep memory flat on a pathological log
            self.rows_open = line.startswith(_ROW_HEADERS)
        else:
            self._set(None)

    def _block(self) -> list[bytes]:
        if self.in_fence:
            if self.fenced is None:
                self.fenced = []
            return self.fenced
        if self.summary is None:
            self.summary = []
        return self.summary

    def _set(self, block: list[bytes] | None) -> None:
        self.rows_open = False
        if self.in_fence:
            self.fenced = block
        else:
            self.summary = block

    def _final_summary(self) -> _Summary | None:
        block = self.summary
        if block is None and self.in_fence:
            block = self.fenced  # an answer with an unclosed fence ends where the real summary starts
        summary: _Summary | None = None
        for raw in block or ():
            candidate = summary or _Summary()
            # A line that fails the strict layouts ends the block before it, as it would have while streaming.
            summary = candidate if candidate.feed(raw.decode("utf-8", "replace").rstrip("\r")) else None
        if summary is not None and not (summary.fields or summary.rows):
            return None
        return summary

    # -- result ---------------------------------------------------------------------------------------------

    def usage(self) -> Usage:
        usage = Usage()
        extra = usage.extra
        extra["session_cumulative"] = False
        summary = self._final_summary()
        tokens_from = None
        if self.otel:
            tokens_from = ("otel", self.otel)
        elif self.calls:
            tokens_from = ("assistant.usage", self.calls)
        if tokens_from:
            source, buckets = tokens_from
            _fill_from_buckets(usage, buckets)
            extra["tokens_source"] = source
        elif summary is not None and _summary_has_tokens(summary):
            _fill_from_summary(usage, summary)
        elif self.checkpoint is not None and _fill_from_checkpoint(usage, self.checkpoint):
            extra["tokens_source"] = "session.usage_checkpoint"
            extra["session_cumulative"] = True  # session-wide totals, restored on resume
        elif self.msg_out_seen:
            usage.tokens_out = self.msg_out
            extra["tokens_source"] = "assistant.message"
        if summary is not None:
            _summary_extra(usage, summary)
        if self.result is not None:
            _result_extra(usage, self.result)
        usage.model = self.main_model or self.start_model or usage.model
        # Counts come from the event stream: known when it showed any, or ran to its final record (then 0 is true).
        if self.turns or self.result is not None:
            usage.turns = self.turns
        if self.tool_ids or self.result is not None:
            usage.tool_calls = len(self.tool_ids)
        if self.version:
            extra["copilot_version"] = self.version
        return usage


_SPAN_FIELDS = (
    ("in", ("gen_ai.usage.input_tokens",)),
    ("out", ("gen_ai.usage.output_tokens",)),
    # Dotted names since 1.0.64; earlier builds used underscores.
    ("cached", ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens")),
    ("cache_write", ("gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_creation_input_tokens")),
    ("reasoning", ("gen_ai.usage.reasoning.output_tokens", "gen_ai.usage.reasoning_output_tokens")),
)


def _data(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    data = obj.get("data") if obj is not None else None
    return data if isinstance(data, dict) else None


def _fill_from_buckets(usage: Usage, buckets: dict[str, dict[str, float]]) -> None:
    totals: dict[str, float] = {}
    for bucket in buckets.values():
        for key, value in bucket.items():
            totals[key] = totals.get(key, 0) + value
    if "in" in totals:
        usage.tokens_in = int(totals["in"])
    if "out" in totals:
        usage.tokens_out = int(totals["out"])
    if "cached" in totals or "in" in totals:
        usage.tokens_cached = int(totals.get("cached", 0))
        if usage.tokens_in is not None:
            usage.tokens_cached = min(usage.tokens_cached, usage.tokens_in)
    extra = usage.extra
    if "cache_write" in totals:
        extra["tokens_cache_write"] = int(totals["cache_write"])
    if "reasoning" in totals:
        extra["tokens_reasoning"] = int(totals["reasoning"])
    if "premium" in totals:
        extra["premium_requests_est"] = round(totals["premium"], 4)
    if "nano_aiu" in totals:
        extra["ai_credits"] = round(totals["nano_aiu"] / 1e9, 6)
    extra["model_calls"] = int(totals.get("calls", 0))
    extra["models"] = {
        model: {key: (round(v, 4) if isinstance(v, float) and not v.is_integer() else int(v)) for key, v in b.items()}
        for model, b in buckets.items()
    }
    # The model with the most prompt tokens stands in when the event stream named none.
    known = {m: b for m, b in buckets.items() if m != "?"}
    if known:
        usage.model = max(known, key=lambda m: known[m].get("in", 0))


def _summary_has_tokens(summary: _Summary) -> bool:
    return bool(summary.rows) or "in" in summary.fields or "out" in summary.fields


def _fill_from_summary(usage: Usage, summary: _Summary) -> None:
    extra = usage.extra
    extra["tokens_source"] = "exit summary"
    if summary.rows:
        totals = {"in": 0, "out": 0, "cached": 0}
        models: dict[str, dict[str, int]] = {}
        for row in summary.rows:
            values = {
                key: _num(row[name])
                for key, name in (
                    ("in", "inp"),
                    ("out", "out"),
                    ("cached", "cr"),
                    ("cache_write", "cw"),
                    ("reasoning", "rs"),
                )
                if row.get(name)
            }
            values = {k: v for k, v in values.items() if v is not None}
            models[row["model"]] = values
            for key, value in values.items():
                totals[key] = totals.get(key, 0) + value
        usage.tokens_in, usage.tokens_out = totals["in"], totals["out"]
        usage.tokens_cached = min(totals["cached"], totals["in"])
        if totals.get("cache_write"):
            extra["tokens_cache_write"] = totals["cache_write"]
        if totals.get("reasoning"):
            extra["tokens_reasoning"] = totals["reasoning"]
        extra["models"] = models
        usage.model = max(models, key=lambda m: models[m].get("in", 0))
        return
    f = summary.fields
    usage.tokens_in = f.get("in")
    usage.tokens_out = f.get("out")
    if "cached" in f or usage.tokens_in is not None:
        cached = f.get("cached", 0)
        usage.tokens_cached = min(cached, usage.tokens_in) if usage.tokens_in is not None else cached
        if cached != usage.tokens_cached:
            extra["tokens_cached_printed"] = cached  # display rounding can put cached a hair above in
    if "reasoning" in f:
        extra["tokens_reasoning"] = f["reasoning"]
    if "cache_write" in f:
        extra["tokens_cache_write"] = f["cache_write"]
    extra["summary_layout"] = summary.layout
    # The 1.0.102 summary (verified offline) counts the whole session: after a resume it includes the earlier
    # processes. Older layouts restarted per process (copilot-cli#3011, #1628).
    extra["session_cumulative"] = summary.layout == "1.0.52+" and "session_id" in f


def _summary_extra(usage: Usage, summary: _Summary) -> None:
    extra = usage.extra
    for key in ("premium_requests", "ai_credits", "lines_added", "lines_removed", "api_duration", "wall_duration"):
        if key in summary.fields and key not in extra:
            extra[key] = summary.fields[key]
    if "session_id" in summary.fields and "session_id" not in extra:
        extra["session_id"] = summary.fields["session_id"]


def _fill_from_checkpoint(usage: Usage, metrics: list[Any]) -> bool:
    buckets: dict[str, dict[str, float]] = {}
    for item in metrics:
        if not isinstance(item, dict):
            continue
        model = item.get("modelId") if isinstance(item.get("modelId"), str) else "?"
        block = item.get("metrics")
        raw = block.get("usage") if isinstance(block, dict) else None
        if not isinstance(raw, dict):
            continue
        bucket = buckets.setdefault(model, {})
        for key, name in (
            ("in", "inputTokens"),
            ("out", "outputTokens"),
            ("cached", "cacheReadTokens"),
            ("cache_write", "cacheWriteTokens"),
            ("reasoning", "reasoningTokens"),
        ):
            value = as_int(raw.get(name))
            if value is not None:
                bucket[key] = bucket.get(key, 0) + value
    if not buckets:
        return False
    _fill_from_buckets(usage, buckets)
    usage.extra.pop("model_calls", None)
    return True


def _result_extra(usage: Usage, result: dict[str, Any]) -> None:
    extra = usage.extra
    session = result.get("sessionId")
    if isinstance(session, str) and session:
        extra["session_id"] = session
    code = result.get("exitCode")
    if isinstance(code, int) and not isinstance(code, bool):
        extra["exit_code"] = code
    figures = result.get("usage")
    if not isinstance(figures, dict):
        return
    premium = as_float(figures.get("premiumRequests"))
    if premium is not None:
        extra["premium_requests"] = premium
    for key, name in (("api_duration_ms", "totalApiDurationMs"), ("session_duration_ms", "sessionDurationMs")):
        value = as_int(figures.get(name))
        if value is not None:
            extra[key] = value
    changes = figures.get("codeChanges")
    if isinstance(changes, dict):
        for key, name in (("lines_added", "linesAdded"), ("lines_removed", "linesRemoved")):
            value = as_int(changes.get(name))
            if value is not None:
                extra[key] = value
        if isinstance(changes.get("filesModified"), list):
            extra["files_modified"] = len(changes["filesModified"])


def parse(log_path: Path) -> Usage:
    """Return the usage in one attempt's log; never raises (what was read before a failure is kept)."""
    parser = _Parser()
    try:
        json_line, text_line, slow = parser.json_line, parser.text_line, _SLOW_FIRST
        # Any line that is no summary line ends a summary-looking block before it; "dirty" defers that reset
        # to the next line that matters, so the common line costs a byte test and a local store.
        dirty = False
        for line in iter_lines(log_path):
            if not line:
                continue
            first = line[0]
            if first == 123:  # "{"
                if line.startswith(_TYPE):
                    json_line(line)
                dirty = True
            elif first in slow:
                if dirty:
                    parser.summary = parser.fenced = None
                    parser.rows_open = dirty = False
                text_line(line)
            else:
                dirty = True
        if dirty:
            parser.summary = parser.fenced = None
            parser.rows_open = False
    except (OSError, ValueError, MemoryError, RecursionError):
        pass
    try:
        return parser.usage()
    except Exception:  # a figure of an unexpected shape must cost that figure, not the attempt's record
        return Usage(extra={"session_cumulative": False})

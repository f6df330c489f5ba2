"""Read the usage Codex CLI printed in an attempt's log: ``exec --json`` (current and legacy) or the text output.

One streaming pass. The log's mode is decided by the first record that only Codex itself prints: a JSON event
(``thread.started``, ``turn.*``, ``item.*``, ``error``, a legacy ``{"id":..,"msg":..}`` event or the legacy
config line) means ``exec --json``; the ``OpenAI Codex v..`` header or a ``tokens used`` footer means the human
output. After that, records of the other mode are agent text (a command's output echoed in the transcript) and
are ignored.

Speed: most lines of a JSON log are ``item.*`` events, often carrying a command's whole output. Those are never
decoded: one anchored regex reads the item's id and type from the line's first bytes. Only the few top-level
records that carry figures (``thread.started``, ``turn.completed``, ...) go through ``json.loads``.
"""

from __future__ import annotations

import operator
import re
from collections import deque
from collections.abc import Iterable, Iterator
from itertools import chain
from pathlib import Path
from typing import Any

from aq_core.enginekit import as_int, iter_lines, loads
from aq_core.usage import Usage

#: Item types that are a tool invocation by the agent (engine-formats §2.1).
TOOL_ITEM_TYPES = frozenset(
    {b"command_execution", b"file_change", b"mcp_tool_call", b"web_search", b"collab_tool_call"}
)
#: Legacy protocol events that open a tool call (engine-formats §2.3); their ``call_id`` is counted.
LEGACY_TOOL_BEGINS = frozenset({"exec_command_begin", "patch_apply_begin", "mcp_tool_call_begin", "web_search_begin"})
#: Legacy events worth decoding; everything else (messages, command output) is skipped undecoded.
LEGACY_WANTED = frozenset({"token_count", "task_complete", "session_configured", *LEGACY_TOOL_BEGINS})

ITEM_PREFIX = b'{"type":"item.'
# serde writes the event tag first, then the item's id, then the flattened details' tag: read both from the head.
# ``item_type`` is the discriminator of the first weeks after openai/codex#4525.
# An id holding an escaped quote does not match and takes the slow path (json.loads).
ITEM_HEAD = re.compile(
    rb'\{"type":"item\.(?:started|updated|completed)","item":\{"id":"(item_(\d{1,7})|[^"]*)","(?:item_)?type":"([a-z_]+)"'
)
ITEM_EVENT = re.compile(rb'\{"type":"item\.(?:started|updated|completed)"')
LEGACY_HEAD = re.compile(rb'\{"id":"(?:[^"\\]|\\.)*","msg":\{"type":"([a-z_]+)"')
JSON_MARKERS = (b'{"type":"thread.', b'{"type":"turn.', ITEM_PREFIX, b'{"type":"error"', b'{"id":"')
LEGACY_CONFIG_KEYS = ("workdir", "provider", "approval", "sandbox")

VERSION_LINE = re.compile(rb"^(?:\[[^\]]{1,40}\] )?OpenAI Codex v(\d[\w.+-]*)")
TS_TOKENS_USED = re.compile(rb"^\[\d{4}-\d\d-\d\dT[\d:.]+Z?\] tokens used: (\d[\d,]*)\s*$")
BLENDED_NUMBER = re.compile(r"\d{1,3}(?:[,.' \u00a0\u202f]\d{3})+|\d+")
TRACING_LINE = re.compile(rb"^\d{4}-\d\d-\d\dT[\d:.]+Z?\s+(?:ERROR|WARN|INFO|DEBUG|TRACE)\s")
ANSI = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]")

#: The text output's last lines kept (cut to LINE_HEAD bytes) to find the footer and tell it from a fake one.
TEXT_WINDOW = 1 << 14
LINE_HEAD = 256
_line_head = operator.itemgetter(slice(None, LINE_HEAD))
#: The text header is looked for in this many first lines (after "Reading prompt from stdin..." and warnings).
HEADER_SEARCH = 64
#: Item ids ``item_<n>`` below this are tracked in a byte map; larger or odd ids in a set.
MAX_MAPPED_ID = 1 << 24


def parse(log_path: Path) -> Usage:
    """Return the usage in a Codex attempt's log; every figure the log does not contain stays ``None``."""
    try:
        return _parse(iter_lines(log_path))
    except Exception:  # the contract: never raise on any input; an unreadable log has no usage we can vouch for
        return Usage()


def _parse(lines: Iterator[bytes]) -> Usage:
    for line in lines:
        if line[:1] == b"{":
            if line.startswith(JSON_MARKERS) or _legacy_config(line) is not None:
                return _JsonScan().run(chain((line,), lines))
        elif _starts_text_mode(line):
            return _TextScan().run(chain((line,), lines))
    return Usage()


def _starts_text_mode(line: bytes) -> bool:
    if b"\x1b" in line:
        line = ANSI.sub(b"", line)
    return bool(VERSION_LINE.match(line)) or line.rstrip() == b"tokens used" or bool(TS_TOKENS_USED.match(line))


def _legacy_config(line: bytes) -> dict[str, Any] | None:
    """Return the legacy ``exec --json`` config summary line's object (it has no ``type``), else None."""
    if not line.startswith((b'{"workdir"', b'{"model"', b'{"provider"', b'{"approval"', b'{"sandbox"', b'{"reasoning')):
        return None
    obj = loads(line)
    if obj is None or "type" in obj or "msg" in obj or not isinstance(obj.get("model"), str):
        return None
    return obj if any(key in obj for key in LEGACY_CONFIG_KEYS) else None


class _IdSet:
    """Distinct item ids of one process segment: ``item_<n>`` in a byte map, anything else in a set."""

    __slots__ = ("count", "marks", "others")

    def __init__(self) -> None:
        self.count = 0
        self.marks = bytearray()
        self.others: set[bytes] = set()

    def add(self, item_id: bytes) -> None:
        digits = item_id[5:]
        if item_id[:5] == b"item_" and digits.isdigit() and len(digits) < 9 and int(digits) < MAX_MAPPED_ID:
            n = int(digits)
            marks = self.marks
            if n >= len(marks):
                marks.extend(bytes(max(n + 1, 2 * len(marks), 64) - len(marks)))
            if not marks[n]:
                marks[n] = 1
                self.count += 1
        elif item_id not in self.others:
            self.others.add(item_id)
            self.count += 1


class _JsonScan:
    """``codex exec --json``: current ThreadEvents (§2.1) and the legacy protocol events (§2.3)."""

    def __init__(self) -> None:
        # Current format.
        self.thread_ids: list[str] = []
        self.thread: str | None = None
        self.usage_by_thread: dict[str | None, dict[str, Any]] = {}
        self.segment_ids = _IdSet()
        self.segment_busy = False  # an event arrived since the last thread.started (else a repeat is a duplicate)
        self.tool_calls = 0
        self.turns = 0
        self.turn_open = False
        self.saw_current = False
        # Legacy format.
        self.saw_legacy = False
        self.model: str | None = None
        self.legacy_session: str | None = None
        self.legacy_total: dict[str, Any] | None = None
        self.legacy_sums: dict[str, int] = {}
        self.legacy_calls: set[str] = set()
        self.legacy_turns = 0

    def run(self, lines: Iterable[bytes]) -> Usage:
        item_head = ITEM_HEAD.match
        tool_types = TOOL_ITEM_TYPES
        previous = b""
        ids = self.segment_ids
        marks = ids.marks  # grown in place by ids.add, so this name stays valid
        for line in lines:
            head = item_head(line)
            if head is not None:
                # The hot path: most lines are item events, and they are never decoded.
                if head[3] in tool_types:
                    digits = head[2]
                    if digits is not None:
                        n = int(digits)
                        if n < len(marks):
                            if not marks[n]:
                                marks[n] = 1
                                ids.count += 1
                            continue
                    ids.add(head[1])
                continue
            if line[:14] == ITEM_PREFIX:
                if ITEM_EVENT.match(line):
                    self._item_slow(line)
                continue  # item.plan.delta and the like carry nothing we count
            if line[:1] != b"{":
                continue  # stderr: "Reading prompt from stdin...", tracing lines, warnings
            if line == previous:
                continue  # a duplicated frame
            previous = line
            if line[:7] == b'{"id":"':
                self._legacy_event(line)
            else:
                self._event(line)
                ids = self.segment_ids  # a thread.started opens a new segment
                marks = ids.marks
        return self._result()

    # -- current format -----------------------------------------------------------------------

    def _event(self, line: bytes) -> None:
        obj = loads(line)
        if obj is None:
            return
        kind = obj.get("type")
        if kind == "thread.started":
            thread_id = obj.get("thread_id")
            thread_id = thread_id if isinstance(thread_id, str) and thread_id else None
            self.saw_current = True
            busy = self.segment_busy or self.segment_ids.count > 0
            if thread_id == self.thread and not busy and self.thread_ids:
                return  # the same thread.started again with nothing in between: a duplicate, not a new process
            self._end_segment()
            self.thread = thread_id
            if thread_id is not None and thread_id not in self.thread_ids:
                self.thread_ids.append(thread_id)
        elif kind == "turn.started":
            self.saw_current = self.segment_busy = self.turn_open = True
        elif kind == "turn.completed":
            self.saw_current = self.segment_busy = True
            self.turns += 1
            self.turn_open = False
            usage = obj.get("usage")
            if isinstance(usage, dict):
                # Thread totals are cumulative (ThreadTokenUsage.total): the last one of a thread wins.
                self.usage_by_thread[self.thread] = usage
        elif kind == "turn.failed":
            self.saw_current = self.segment_busy = True
            self.turns += 1
            self.turn_open = False
        elif kind == "error" or (isinstance(kind, str) and kind.startswith("item.")):
            self.saw_current = self.segment_busy = True
        elif self.model is None and not self.saw_current and not self.saw_legacy:
            config = _legacy_config(line)
            if config is not None:
                self.model = config["model"] or None
                self.saw_legacy = True

    def _item_slow(self, line: bytes) -> None:
        """An item event whose head is not in serde's usual order: decode it to read id and type."""
        obj = loads(line)
        item = obj.get("item") if obj else None
        if not isinstance(item, dict):
            return
        self.saw_current = self.segment_busy = True
        item_id, item_type = item.get("id"), item.get("type", item.get("item_type"))
        if isinstance(item_id, str) and isinstance(item_type, str) and item_type.encode() in TOOL_ITEM_TYPES:
            self.segment_ids.add(item_id.encode())

    def _end_segment(self) -> None:
        # Item ids restart at item_0 in every process, so distinct ids are counted per segment.
        self.tool_calls += self.segment_ids.count
        self.segment_ids = _IdSet()
        self.segment_busy = False

    # -- legacy format ------------------------------------------------------------------------

    def _legacy_event(self, line: bytes) -> None:
        head = LEGACY_HEAD.match(line)
        if head is None or head[1].decode() not in LEGACY_WANTED:
            if head is not None:
                self.saw_legacy = True
            return
        obj = loads(line)
        msg = obj.get("msg") if obj else None
        if not isinstance(msg, dict):
            return
        self.saw_legacy = True
        kind = msg.get("type")
        if kind == "token_count":
            if "info" in msg:
                info = msg.get("info")  # null until the first response
                total = info.get("total_token_usage") if isinstance(info, dict) else None
                if isinstance(total, dict):
                    self.legacy_total = total
            else:
                # Mid-2025 builds: one flat count per model response, to be summed.
                for key in ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_output_tokens"):
                    value = as_int(msg.get(key))
                    if value is not None:
                        self.legacy_sums[key] = self.legacy_sums.get(key, 0) + value
        elif kind == "task_complete":
            self.legacy_turns += 1
        elif kind == "session_configured":
            session = msg.get("session_id")
            if isinstance(session, str) and session:
                self.legacy_session = session
            if self.model is None and isinstance(msg.get("model"), str) and msg["model"]:
                self.model = msg["model"]
        elif kind in LEGACY_TOOL_BEGINS:
            call_id = msg.get("call_id")
            if isinstance(call_id, str) and call_id:
                self.legacy_calls.add(call_id)

    # -- result ---------------------------------------------------------------------------------

    def _result(self) -> Usage:
        if self.saw_current or self.segment_ids.count or self.tool_calls:
            return self._current_result()
        if self.saw_legacy:
            return self._legacy_result()
        return Usage()

    def _current_result(self) -> Usage:
        self._end_segment()
        usage = Usage(tool_calls=self.tool_calls, turns=self.turns or None)
        sums: dict[str, int] = {}
        for raw in self.usage_by_thread.values():
            for key in (
                "input_tokens",
                "cached_input_tokens",
                "output_tokens",
                "reasoning_output_tokens",
                "cache_write_input_tokens",
            ):
                value = as_int(raw.get(key))
                if value is not None:
                    sums[key] = sums.get(key, 0) + value
        usage.tokens_in = sums.get("input_tokens")
        usage.tokens_out = sums.get("output_tokens")  # already includes reasoning_output_tokens
        cached = sums.get("cached_input_tokens")
        if cached is not None and (usage.tokens_in is None or cached <= usage.tokens_in):
            usage.tokens_cached = cached
        extra = usage.extra
        if "reasoning_output_tokens" in sums:
            extra["tokens_reasoning"] = sums["reasoning_output_tokens"]
        if "cache_write_input_tokens" in sums:
            extra["tokens_cache_write"] = sums["cache_write_input_tokens"]
        if self.thread_ids:
            extra["session_id"] = self.thread_ids[-1] if self.thread is None else self.thread
            # Totals continue across `exec resume` of the same thread: a resumed attempt reports them again.
            extra["session_cumulative"] = True
        if len(self.thread_ids) > 1:
            extra["thread_ids"] = list(self.thread_ids)
        if len(self.usage_by_thread) > 1:
            extra["usage_by_thread"] = {
                str(thread): {k: v for k, v in raw.items() if as_int(v) is not None}
                for thread, raw in self.usage_by_thread.items()
            }
        extra["complete"] = not self.turn_open and self.turns > 0
        extra["format"] = "exec-json"
        return usage

    def _legacy_result(self) -> Usage:
        usage = Usage(model=self.model, tool_calls=len(self.legacy_calls), turns=self.legacy_turns or None)
        raw = self.legacy_total if self.legacy_total is not None else (self.legacy_sums or None)
        if raw is not None:
            tokens_in = as_int(raw.get("input_tokens"))
            cached = as_int(raw.get("cached_input_tokens"))
            usage.tokens_in = tokens_in
            usage.tokens_out = as_int(raw.get("output_tokens"))
            if cached is not None and (tokens_in is None or cached <= tokens_in):
                usage.tokens_cached = cached
            reasoning = as_int(raw.get("reasoning_output_tokens"))
            if reasoning is not None:
                usage.extra["tokens_reasoning"] = reasoning
            total = as_int(raw.get("total_tokens"))
            if total is not None:
                usage.extra["tokens_total"] = total
        if self.legacy_session:
            usage.extra["session_id"] = self.legacy_session
        usage.extra["format"] = "exec-json-legacy"
        return usage


class _TextScan:
    """The human output of ``codex exec`` (§2.2), current layout and the older ``[ts]``-prefixed one."""

    def __init__(self) -> None:
        self.version: str | None = None
        self.model: str | None = None
        self.session: str | None = None
        self.header = 0  # 0 before the header, 1 after the version line, 2 inside, 3 done
        self.tail: deque[bytes] = deque(maxlen=TEXT_WINDOW)

    def run(self, lines: Iterable[bytes]) -> Usage:
        iterator = iter(lines)
        head = _line_head
        for count, line in enumerate(iterator):  # the header sits in the first lines
            self.tail.append(head(line))
            self._header_line(_clean(line))
            if self.header == 3 or (self.header == 0 and count >= HEADER_SEARCH):
                break
        # Everything else only matters near the end (the footer and the echo after it): keep the last lines,
        # cut short, consumed in C without a Python step per line.
        self.tail.extend(map(head, iterator))
        return self._result()

    def _header_line(self, line: bytes) -> None:
        if self.header == 0:
            match = VERSION_LINE.match(line)
            if match:
                self.version = match[1].decode("ascii", "replace")
                self.header = 1
            return
        if line == b"--------":
            self.header = 2 if self.header == 1 else 3
            return
        if self.header == 1:
            self.header = 2  # a build without the first dashes
        key, sep, value = line.partition(b": ")
        if not sep:
            return
        text = value.decode("utf-8", "replace").strip()
        if key == b"model" and self.model is None and text:
            self.model = text
        elif key == b"session id" and self.session is None and text:
            self.session = text

    def _footer(self) -> int | None:
        """Return the real footer's number: the one the stdout echo of the final message follows.

        With stdout and stderr in one log the footer is followed by the final message again, so a fake
        ``tokens used`` in the answer appears once before and once after the real one. The real footer is the
        first candidate whose following lines repeat exactly the lines just before it (empty lines, aq's own
        lines and tracing noise left out). Only the log's last TEXT_WINDOW lines are looked at (the footer is
        printed last, before the echo); when no candidate is followed by its echo, the last candidate is taken.
        """
        lines = [clean for clean in map(_clean, self.tail) if _counted(clean)]
        candidates = [
            (index, number)
            for index in range(len(lines) - 1)
            if lines[index] == b"tokens used" and (number := _blended_number(lines[index + 1])) is not None
        ]
        end = len(lines)
        for index, number in candidates:
            tail = end - (index + 2)
            if index - tail >= 0 and lines[index - tail : index] == lines[index + 2 :]:
                return number
        return candidates[-1][1] if candidates else None

    def _timestamped_total(self) -> tuple[int, int] | None:
        """Mid-2025 builds: ``[ts] tokens used: N`` after each token count; return (last N, how many)."""
        found = [m for m in map(TS_TOKENS_USED.match, map(_clean, self.tail)) if m]
        return (int(found[-1][1].replace(b",", b"")), len(found)) if found else None

    def _result(self) -> Usage:
        usage = Usage(model=self.model)
        extra = usage.extra
        if self.version:
            extra["engine_version"] = self.version
        if self.session:
            extra["session_id"] = self.session
        blended = self._footer()
        if blended is not None:
            # (input - cached) + output: one number that cannot be split into the normalized fields.
            extra["tokens_blended"] = blended
            if self.session:
                extra["session_cumulative"] = True
        elif (timestamped := self._timestamped_total()) is not None:
            extra["tokens_total"], extra["tokens_used_lines"] = timestamped
        extra["format"] = "text"
        return usage


def _clean(line: bytes) -> bytes:
    if b"\x1b" in line:
        line = ANSI.sub(b"", line)
    return line.rstrip()


def _counted(line: bytes) -> bool:
    return bool(line) and line[:3] != b"aq:" and not (line[:1].isdigit() and TRACING_LINE.match(line))


def _blended_number(line: bytes) -> int | None:
    text = line.decode("utf-8", "replace").strip()
    if not BLENDED_NUMBER.fullmatch(text):
        return None
    return int("".join(ch for ch in text if ch.isdigit()))

"""Name why a Codex attempt failed: a usage limit, a rate limit or a login problem, from Codex's own error records.

Only the engine's top-level records are read: in ``exec --json`` the ``turn.failed`` and ``error`` events (and the
legacy ``{"msg":{"type":"error"}}``), in the text output the ``ERROR: ...`` lines, and in both the ``Error: ...``
line Codex prints when it stops before a turn. Text inside a command's output (a JSON string in
``aggregated_output``) is never a record. The decisive message is the last ``turn.failed`` one, else the last
error that is not a ``Reconnecting...`` retry notice, else the last ``Error:`` line.
"""

from __future__ import annotations

import operator
import re
from collections import deque
from collections.abc import Iterable
from itertools import chain
from pathlib import Path

from aq_core.engine import Failure, Outcome
from aq_core.enginekit import detail, iter_lines, loads, reset_at

from .usage import ANSI, JSON_MARKERS, LEGACY_HEAD, VERSION_LINE, _legacy_config

# Order matters: a usage-limit body is also an HTTP 429, and "limit" words appear in rate-limit messages.
USAGE_LIMIT = re.compile(
    r"you(?:'|’)ve hit your usage limit"  # codex-rs/core/src/error.rs UsageLimitReachedError
    r"|usage_limit_reached|usage limit has been reached|usage_limit_exceeded"
    r"|quota exceeded|insufficient_quota|exceeded your current quota"  # CodexErr::QuotaExceeded, API 429 body
    r"|you(?:'|’)re out of codex messages",
    re.IGNORECASE,
)
AUTH = re.compile(
    r"\b401 unauthorized|status(?:_code)?\"?\s*[:=]?\s*401\b|\bunauthorized\b"
    r"|access token could not be refreshed|refresh token|log out and sign in again|sign in again"
    r"|not logged in|please (?:log|sign) in|codex login"
    r"|missing bearer|incorrect api key|invalid api key|invalid_api_key|token_expired|authentication token is expired"
    r"|missing environment variable: `(?:openai|codex)_api_key`"
    r"|to use codex with your chatgpt plan, upgrade to plus",  # CodexErr::UsageNotIncluded: an account problem
    re.IGNORECASE,
)
RATE_LIMIT = re.compile(
    r"\b429 too many requests|status(?:_code)?\"?\s*[:=]?\s*429\b|too many requests|rate[ _-]?limit",
    re.IGNORECASE,
)
TIMESTAMP = re.compile(rb"^\[\d{4}-\d\d-\d\dT[\d:.]+Z?\] ")
RETRY_NOTICE = re.compile(r"^\s*Reconnecting\.\.\.", re.IGNORECASE)

#: Lines that open an event in the text transcript (event_processor_with_human_output.rs).
TEXT_EVENT_LINES = frozenset({b"user", b"codex", b"thinking", b"exec", b"file update", b"tokens used"})
MAX_MESSAGE = 2048
#: Text output: the last lines kept, each cut to MAX_MESSAGE bytes (at most 4 MiB).
TAIL_LINES = 2048
_line_head = operator.itemgetter(slice(None, MAX_MESSAGE))
DETAIL_CHARS = 200


def classify(outcome: Outcome) -> Failure | None:
    """Return the failure class of a Codex attempt, or ``None`` to let the core decide."""
    if outcome.timed_out or outcome.exit_code == 0:
        # A timeout is the core's `timeout` (offline Codex retries forever); exit 0 is success: errors Codex
        # printed on the way were retried (`exec` exits 1 after any error it did not retry).
        return None
    try:
        lost = _lost_thread(outcome.log_path)
        message = decisive_message(outcome.log_path)
    except Exception:  # an unreadable log says nothing about the cause: let the core's fallback answer
        return None
    if lost:
        # `exec resume` of a thread whose rollout is gone fails the same way every time: the core
        # starts the next attempt on a new thread instead.
        return Failure("crash", detail="codex: " + detail(lost, DETAIL_CHARS), session_lost=True)
    if not message:
        return None
    line = "codex: " + detail(message, DETAIL_CHARS)
    if USAGE_LIMIT.search(message):
        return Failure("usage_limit", reset_at=reset_at(message, outcome.finished_at), detail=line)
    if AUTH.search(message):
        return Failure("auth_error", detail=line)
    if RATE_LIMIT.search(message):
        return Failure("rate_limited", reset_at=reset_at(message, outcome.finished_at), detail=line)
    return None


# What `codex exec resume <id>` prints (on stderr, then exits 1) when the thread cannot be resumed:
# "Error: thread/resume: thread/resume failed: no rollout found for thread id <id> (code -32600)"
# (vm0-ai/vm0#16125, Codex 0.137) and "Error: thread/read: thread/read failed: thread not loaded: <id>"
# (openai/codex#22064).
LOST_THREAD = re.compile(r"^Error: thread/(?:resume|read): .*(?:no rollout found for thread id|thread not loaded)")


def _lost_thread(log_path: Path) -> str | None:
    """Return Codex's own line saying the thread to resume is gone (never text inside a JSON event)."""
    found = None
    for line in iter_lines(log_path):
        if (b"rollout" in line or b"not loaded" in line) and line.startswith(b"Error: thread/"):
            text = line.decode("utf-8", "replace").strip()
            if LOST_THREAD.match(text):
                found = text
    return found


def decisive_message(log_path: Path) -> str | None:
    """Return the error message that ended the attempt, read from Codex's own records in the log."""
    lines = iter_lines(log_path)
    fatal: str | None = None
    for line in lines:
        if line[:1] == b"{":
            if line.startswith(JSON_MARKERS) or _legacy_config(line) is not None:
                return _json_message(chain((line,), lines))
        elif _text_mode_line(line):
            return _text_message(chain((line,), lines))
        elif line.startswith(b"Error: "):
            # Codex stopped before printing anything of its own: a login or config problem at start-up.
            fatal = line[7:].decode("utf-8", "replace").strip()[:MAX_MESSAGE] or None
    return fatal


def _text_mode_line(line: bytes) -> bool:
    if b"\x1b" in line:
        line = ANSI.sub(b"", line)
    if line[:1] == b"[":
        line = TIMESTAMP.sub(b"", line, count=1)
    return bool(VERSION_LINE.match(line)) or line.startswith(b"ERROR: ")


def _json_message(lines: Iterable[bytes]) -> str | None:
    """``exec --json``: the last ``turn.failed``, else the last ``error`` that is no retry notice."""
    failed: str | None = None
    error: str | None = None
    fatal: str | None = None  # "Error: ..." on stderr after the last event: Codex's last words
    for line in lines:
        if line[:1] != b"{":
            if line.startswith(b"Error: "):
                fatal = line[7:].decode("utf-8", "replace").strip()[:MAX_MESSAGE] or None
            continue
        if line.startswith(b'{"type":"turn.failed"') or line.startswith(b'{"type":"error"'):
            fatal = None
            obj = loads(line)
            if obj is None:
                continue
            if obj.get("type") == "turn.failed":
                err = obj.get("error")
                text = err.get("message") if isinstance(err, dict) else None
                if isinstance(text, str) and text:
                    failed = text[:MAX_MESSAGE]
            elif obj.get("type") == "error":
                text = obj.get("message")
                if isinstance(text, str) and text and not RETRY_NOTICE.match(text):
                    error = text[:MAX_MESSAGE]
        elif line.startswith(b'{"id":"'):
            head = LEGACY_HEAD.match(line)
            if head is None:
                continue
            fatal = None
            if head[1] == b"error":
                obj = loads(line)
                msg = obj.get("msg") if obj else None
                text = msg.get("message") if isinstance(msg, dict) else None
                if isinstance(text, str) and text:
                    error = text[:MAX_MESSAGE]
        elif line.startswith(JSON_MARKERS):
            fatal = None
    return failed or error or fatal


def _text_message(lines: Iterable[bytes]) -> str | None:
    """Text output: the last ``ERROR:`` line that is no retry notice, else a closing ``Error:`` line.

    Codex exits right after the error that ends a run, so it is among the log's last lines: only those are kept
    (consumed in C, cut short), as in the usage parser. JSON in the transcript is a command's output.
    """
    tail = deque(map(_line_head, lines), maxlen=TAIL_LINES)
    error: str | None = None
    fatal: str | None = None
    for line in tail:
        if b"\x1b" in line:
            line = ANSI.sub(b"", line)
        if line[:1] == b"[":
            line = TIMESTAMP.sub(b"", line, count=1)  # mid-2025 builds prefixed every record with "[ts] "
        if line.startswith(b"ERROR: "):
            fatal = None
            text = line[7:].decode("utf-8", "replace").strip()
            if text and not RETRY_NOTICE.match(text):
                error = text
        elif line.startswith(b"Error: "):
            # anyhow's last words; a command's output in the transcript may hold such a line too, so it only
            # counts when no record of Codex's own comes after it.
            fatal = line[7:].decode("utf-8", "replace").strip() or None
        elif line.rstrip() in TEXT_EVENT_LINES:
            fatal = None
    return error or fatal

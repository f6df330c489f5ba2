"""Name how a Copilot CLI attempt ended: no usable credentials, a short rate limit, or a plan/quota window."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aq_core.engine import Failure, Outcome
from aq_core.enginekit import detail, iter_lines, loads, reset_at

#: Waits at least this long are a plan window (``usage_limit``), shorter ones a throttle (``rate_limited``).
USAGE_WINDOW_S = 3600.0

_AUTH = (
    "no authentication information found",  # realcli capture, 1.0.102, no token
    "classic personal access tokens (ghp_) are not supported",
)
_QUOTA = (
    "you have no quota",
    "quota exceeded",
    "quota_exceeded",
    "session_quota_exceeded",
    "billing_not_configured",
    "exceeded your copilot token usage",
    "no remaining quota for premium requests",
    "exhausted your premium model quota",
    # A BYOK provider's plan window, as Copilot relays it ("429 The usage limit has been reached"; OpenAI's
    # usage_limit_reached body, seen through the scripted model server).
    "usage limit has been reached",
    "usage_limit_reached",
    "exceeded your current quota",
    "insufficient_quota",
)
_WINDOW = (
    "weekly rate limit",
    "user_weekly_rate_limited",
    "weekly limit",
    "monthly limit",
    "session limit",  # "Sorry, you've exceeded your 5 hour session limits."
)
_RATE = (
    "you've hit a rate limit",
    "you have been rate-limited",
    "you've been rate limited",
    "session rate limit",
    "rate limit exceeded",
    '"code":"rate_limited"',
    "user_global_rate_limited",
    "user_model_rate_limited",
    "integration_rate_limited",
)
_QUOTA_CODES = frozenset({"quota_exceeded", "session_quota_exceeded", "billing_not_configured"})
_WINDOW_CODES = frozenset({"user_weekly_rate_limited"})
# Cheap byte checks (in ``_scan``) select the text lines worth a closer look; the phrases above decide.
_STATUS_CUE = re.compile(rb"(?<!\d)(?:40[12]|429)(?!\d)")
# A status at the head of a line: "429 rate limit exceeded", "✗ 402 You have no quota".
_STATUS_HEAD = re.compile(r"^[^\w\n]{0,4}(40[12]|429)\s+[A-Za-z]")
_LAST_ERROR = re.compile(r"\bLast error:\s*", re.IGNORECASE)
_SPACE = re.compile(r"\s+")


@dataclass
class _Signal:
    text: str
    error_type: str | None = None
    error_code: str | None = None
    status: int | None = None
    printed_at: float | None = None


def _epoch(stamp: Any) -> float | None:
    if not isinstance(stamp, str) or not stamp:
        return None
    try:
        moment = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def _scan(log_path: Path) -> tuple[_Signal | None, int | None]:
    """Return the last error the CLI reported and the ``exitCode`` of its last ``result`` record.

    A text error is read as a paragraph: the line with a cue word, the line just before it and the lines
    after it up to a blank line, because the CLI wraps long messages (even inside "rate limit").
    """
    signal: _Signal | None = None
    result_code: int | None = None
    window: list[bytes] | None = None
    prev: bytes | None = None  # the text line just before, when no blank line came between

    def close() -> None:
        nonlocal signal, window
        if window:
            text = "\n".join(part.decode("utf-8", "replace") for part in window)
            status = next((s for s in map(_status_of, text.splitlines()) if s is not None), None)
            if _classify_text(_SPACE.sub(" ", text).lower(), None, None, status):
                signal = _Signal(text=text, status=status)
        window = None

    for line in iter_lines(log_path):
        if line.startswith(b'{"type":"'):
            close()
            prev = None
            if line.startswith(b'{"type":"session.error"'):
                obj = loads(line)
                data = obj.get("data") if obj else None
                if isinstance(data, dict) and isinstance(data.get("message"), str):
                    status = data.get("statusCode")
                    signal = _Signal(
                        text=data["message"],
                        error_type=data.get("errorType") if isinstance(data.get("errorType"), str) else None,
                        error_code=data.get("errorCode") if isinstance(data.get("errorCode"), str) else None,
                        status=status if isinstance(status, int) and not isinstance(status, bool) else None,
                        printed_at=_epoch(obj.get("timestamp")),
                    )
            elif line.startswith(b'{"type":"result"'):
                obj = loads(line)
                code = obj.get("exitCode") if obj else None
                if isinstance(code, int) and not isinstance(code, bool):
                    result_code = code
            continue
        if not line.strip():
            close()
            prev = None
            continue
        if window is not None:
            window.append(line)
            if len(window) >= 8:
                close()
        elif (
            b"ate" in line  # the cue words without their first letter, so any capitalisation matches
            or b"uota" in line
            or b"imit" in line
            or b"oken" in line
            or b"uthenticat" in line
            or b"ccess token" in line
            or _STATUS_CUE.search(line[:16])
        ):
            window = [prev, line] if prev is not None else [line]
        prev = line
    close()
    return signal, result_code


def _status_of(text: str) -> int | None:
    match = _STATUS_HEAD.match(text)
    return int(match.group(1)) if match else None


def _classify_text(low: str, error_type: str | None, error_code: str | None, status: int | None) -> str | None:
    """Return ``auth_error``, ``quota``, ``window``, ``rate`` or None for an error message."""
    if error_type == "authentication" or status == 401 or any(p in low for p in _AUTH):
        return "auth_error"
    if error_type == "quota" or error_code in _QUOTA_CODES or status == 402 or any(p in low for p in _QUOTA):
        return "quota"
    if error_code in _WINDOW_CODES or any(p in low for p in _WINDOW):
        return "window"
    if error_type == "rate_limit" or status == 429 or (error_code or "").endswith("rate_limited"):
        return "rate"
    if any(p in low for p in _RATE):
        return "rate"
    return None


def _last_error_reset(text: str, now: float) -> float | None:
    # "Failed to get response ... retried 5 times (total retry wait time: 53.67 seconds) Last error: 429 ...":
    # the wait already spent is not the one ahead.
    reset = reset_at(_LAST_ERROR.split(text)[-1], now)
    return reset if reset is not None and reset > now else None


def classify(outcome: Outcome) -> Failure | None:
    """Return the class of a Copilot attempt, or None to let the core decide."""
    if outcome.timed_out:
        return None  # the timeout is what ended it, whatever the log says
    try:
        signal, result_code = _scan(outcome.log_path)
    except (OSError, ValueError, MemoryError):
        return None
    # In JSON mode the process may exit 0 although the agent failed: the result record's exitCode says so.
    failed = outcome.exit_code != 0 or result_code not in (None, 0)
    if not failed:
        return None
    kind = None
    if signal is not None:
        kind = _classify_text(_SPACE.sub(" ", signal.text).lower(), signal.error_type, signal.error_code, signal.status)
    if kind is None:
        if outcome.exit_code == 0 and result_code not in (None, 0):
            return Failure("crash", detail=f"copilot: the result record says exitCode {result_code}")
        return None
    line = "copilot: " + detail(signal.text)
    if kind == "auth_error":
        return Failure("auth_error", detail=line)
    printed = signal.printed_at
    # A relative wait counts from when it was printed; the event's own timestamp is the best record of that.
    now = printed if printed is not None and printed <= outcome.finished_at + 60 else outcome.finished_at
    reset = _last_error_reset(signal.text, now)
    if kind in ("quota", "window"):
        return Failure("usage_limit", reset_at=reset, detail=line)
    long_wait = reset is not None and reset - now >= USAGE_WINDOW_S
    return Failure("usage_limit" if long_wait else "rate_limited", reset_at=reset, detail=line)

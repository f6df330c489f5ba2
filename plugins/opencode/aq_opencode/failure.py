"""Name why an opencode attempt failed, from opencode's own records in the log.

``opencode run --format json`` reports a failed model call as one ``{"type":"error",...}`` event after its own
retries: ``error{name, data{message, statusCode, isRetryable, responseHeaders, responseBody}}`` (an
``APIError``; ``ProviderAuthError`` for a missing login). Errors before the session starts are one
``Error: <message>`` line on stderr (ANSI-coloured), e.g. ``Error: Session not found`` for a session id this
host does not have. The decisive record is the last ``error`` event, else the last ``Error:`` line, else the
last ``stream error`` of opencode's own log (``--print-logs``) after the last finished step: opencode honours a
``retry-after`` of hours by sleeping without printing an event, so a usage limit it sleeps on is seen only there,
and the job's timeout ends the attempt (classed by that line, not as a timeout).
"""

from __future__ import annotations

import email.utils
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aq_core.engine import Failure, Outcome
from aq_core.enginekit import as_float, detail, iter_lines, loads, reset_at

ERROR_EVENT = b'{"type":"error"'
ANSI = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]")
# Order matters: a quota body comes with HTTP 429 too.
USAGE_LIMIT = re.compile(
    r"insufficient_quota|exceeded your current quota|usage_limit_reached|usage limit has been reached"
    r"|quota exceeded|resource_exhausted|billing|credit balance is too low|insufficient credits",
    re.IGNORECASE,
)
AUTH = re.compile(
    r"invalid[ _]api[ _]key|incorrect api key|invalid x-api-key|authentication_error|unauthorized"
    r"|api key (?:is )?(?:missing|not valid|required)|permission_denied|ProviderAuthError",
    re.IGNORECASE,
)
RATE_LIMIT = re.compile(r"rate[ _-]?limit|too many requests|overloaded_error", re.IGNORECASE)
STREAM_ERROR = re.compile(
    rb'^timestamp=(\S+) level=ERROR .*?message="stream error" .*?error\.error="((?:[^"\\]|\\.)*)"'
)
STEP_FINISH = b'{"type":"step_finish"'
SESSION_LOST = re.compile(r"^Session not found\b")


@dataclass
class Record:
    """The error that ended the attempt: opencode's message, its HTTP status and the raw response."""

    message: str
    status: int | None = None
    body: str = ""
    headers: dict[str, Any] | None = None
    at: float | None = None  # the event's own time (epoch seconds)
    name: str = ""


def classify(outcome: Outcome) -> Failure | None:
    """Return the failure class of an opencode attempt, or ``None`` to let the core decide."""
    try:
        record = decisive_record(outcome.log_path)
    except OSError:
        return None
    if record is None:
        return None
    if outcome.timed_out and record.name != "stream error":
        return None  # offline, opencode retries for about a minute: the job's timeout is the core's class
    if outcome.exit_code == 0 and record.status is None and not record.name:
        return None  # an "Error:" line in a run that then succeeded
    why = "opencode: " + detail(record.message)
    if SESSION_LOST.match(record.message):
        return Failure("crash", detail=why, session_lost=True)
    text = " ".join((record.name, record.message, record.body))
    now = record.at if record.at is not None else outcome.finished_at
    if record.status == 402 or USAGE_LIMIT.search(text):
        return Failure("usage_limit", reset_at=_reset_at(record, now), detail=why)
    if record.status in (401, 403) or AUTH.search(text):
        return Failure("auth_error", detail=why)
    if record.status == 429 or RATE_LIMIT.search(text):
        return Failure("rate_limited", reset_at=_reset_at(record, now), detail=why)
    return None


def decisive_record(log_path: Path) -> Record | None:
    """Return the last ``error`` event, else the last ``Error:`` line, else the last unfinished stream error."""
    event: Record | None = None
    line_error: Record | None = None
    stream: Record | None = None
    for line in iter_lines(log_path):
        if line.startswith(ERROR_EVENT):
            event = _event(line) or event
        elif line.startswith(STEP_FINISH):
            stream = None  # a later step finished: that error was retried away
        elif line.startswith(b"timestamp=") and b"stream error" in line:
            found = STREAM_ERROR.match(line)
            if found:
                message = found[2].decode("utf-8", "replace").replace('\\"', '"')[:2048]
                stream = Record(message, at=_iso(found[1].decode("ascii", "replace")), name="stream error")
        elif b"Error:" in line[:64]:
            plain = ANSI.sub(b"", line).strip()
            if plain.startswith(b"Error: "):
                line_error = Record(plain[7:].decode("utf-8", "replace").strip()[:2048])
    return event or line_error or stream


def _iso(stamp: str) -> float | None:
    import datetime

    try:
        return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _event(line: bytes) -> Record | None:
    obj = loads(line)
    error = obj.get("error") if obj is not None else None
    if not isinstance(error, dict):
        return None
    data = error.get("data") if isinstance(error.get("data"), dict) else {}
    message = data.get("message") if isinstance(data.get("message"), str) else ""
    status = data.get("statusCode")
    body = data.get("responseBody")
    headers = data.get("responseHeaders")
    stamp = as_float(obj.get("timestamp"))
    name = error.get("name") if isinstance(error.get("name"), str) else ""
    return Record(
        message=(message or name or "error")[:2048],
        status=status if isinstance(status, int) and not isinstance(status, bool) else None,
        body=body[:8192] if isinstance(body, str) else "",
        headers=headers if isinstance(headers, dict) else None,
        at=stamp / 1000 if stamp else None,
        name=name,
    )


def _reset_at(record: Record, now: float) -> float | None:
    """The reset time the response carried: the body's ``resets_at``/``resets_in_seconds``, then ``retry-after``,
    then a phrase in the message ("try again in 20s"). A time already past is dropped."""
    found = _from_body(record.body, now) or _from_headers(record.headers or {}, now)
    if found is None:
        found = reset_at(record.message, now)
    return found if found is not None and found > now else None


def _from_body(body: str, now: float) -> float | None:
    obj = loads(body) if body else None
    error = obj.get("error") if obj is not None else None
    if not isinstance(error, dict):
        return None
    at = as_float(error.get("resets_at"))
    if at:
        return at
    within = as_float(error.get("resets_in_seconds"))
    return now + within if within else None


def _from_headers(headers: dict[str, Any], now: float) -> float | None:
    value = headers.get("retry-after")
    if not isinstance(value, str) or not value.strip():
        return None
    seconds = as_float(_number(value))
    if seconds is not None:
        return now + seconds if seconds > 0 else None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


def _number(text: str) -> float | None:
    try:
        return float(text.strip())
    except ValueError:
        return None

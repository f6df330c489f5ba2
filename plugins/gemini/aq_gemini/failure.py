"""Name why a Gemini CLI attempt failed, from the CLI's own records: the ``result`` event with ``status: error``
(its ``error.message``), the ``error`` events, and the plain lines it prints on stderr when it stops (start-up
refusals, ``Error when talking to Gemini API``, the quota error's cause with its ``Please retry in Ns``).

| class | what the CLI printed (0.61.0) |
|---|---|
| ``usage_limit`` | ``You have exhausted your daily quota on this model.`` (``TerminalQuotaError``: a per-day quota, or a wait over 5 minutes); a Google-login plan's ``... Your quota will reset after 2h52m39s.`` |
| ``rate_limited`` | ``You exceeded your current quota ... Please retry in 1s. Suggested retry after 1s.`` (``RetryableQuotaError``, after its retries), ``RESOURCE_EXHAUSTED``, HTTP 429 |
| ``auth_error`` | ``Please set an Auth method ...`` (exit 41), ``API key not valid``, 401/403 |
| ``config_error`` | ``not running in a trusted directory`` (exit 55), an unknown option, an unknown model |
| ``crash`` with a detail | ``fetch failed`` / ``ENOTFOUND`` (no network, after ~10 retries), ``No input provided via stdin`` |

The reset time is the printed wait (``Please retry in 10800s``, ``Suggested retry after 39s``, ``reset after
2h52m39s``), counted from the end of the run.
"""

from __future__ import annotations

import re
from collections import deque

from aq_core.engine import Failure, Outcome
from aq_core.enginekit import detail, iter_lines, loads, reset_at

USAGE_LIMIT = re.compile(
    r"exhausted your daily quota|TerminalQuotaError|PerDay|daily quota|QUOTA_EXHAUSTED"
    r"|INSUFFICIENT_G1_CREDITS_BALANCE|exceeded your monthly|quota will reset",
    re.IGNORECASE,
)
RATE_LIMIT = re.compile(
    r"RetryableQuotaError|RESOURCE_EXHAUSTED|exceeded your current quota|Quota exceeded for metric"
    r"|rate[ _-]?limit|\b(?:status|code)\W{0,3}429\b|too many requests|resource has been exhausted|MODEL_CAPACITY_EXHAUSTED"
    r"|exhausted your capacity|capacity exceeded",
    re.IGNORECASE,
)
AUTH = re.compile(
    r"Please set an Auth method|API key not valid|API_KEY_INVALID|UNAUTHENTICATED|PERMISSION_DENIED"
    r"|invalid authentication credentials|\b(?:status|code)\W{0,3}40[13]\b|Failed to (?:login|sign in)|login required",
    re.IGNORECASE,
)
CONFIG = re.compile(
    r"not running in a trusted directory|Unknown arguments?:|Invalid values?:|ModelNotFoundError|Model not found"
    r"|is not found for API version",
    re.IGNORECASE,
)
NETWORK = re.compile(
    r"fetch failed|ENOTFOUND|ECONNREFUSED|EAI_AGAIN|getaddrinfo|ETIMEDOUT|socket hang up", re.IGNORECASE
)
NO_INPUT = re.compile(r"No input provided via stdin", re.IGNORECASE)
WAIT = re.compile(
    r"(?:Please retry in|Suggested retry after)\s+[0-9.]+\s*m?s\b|reset after\s+(?:\d+[hms]\s*)+", re.IGNORECASE
)
# Noise the CLI prints on every run; never a reason.
NOISE = re.compile(r"^(?:Warning: 256-color|YOLO mode is enabled|Ripgrep is not available|\[STARTUP\]|\s+at )")
TAIL = 400
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _messages(outcome: Outcome) -> tuple[list[str], list[str]]:
    """(error messages from the CLI's JSON records, the last plain lines), oldest first."""
    records: list[str] = []
    lines: deque[str] = deque(maxlen=TAIL)
    for raw in iter_lines(outcome.log_path):
        text = raw.decode("utf-8", "replace")
        if text.startswith('{"type":'):
            obj = loads(text) or {}
            kind = obj.get("type")
            if kind == "result" and obj.get("status") == "error" or kind == "error":
                error = obj.get("error")
                message = error.get("message") if isinstance(error, dict) else obj.get("message")
                if isinstance(message, str) and message:
                    records.append(message)
            elif kind == "result":
                records.clear()  # a later successful process answers for the attempt
            continue
        if text.strip() and not NOISE.match(text):
            lines.append(text)
    return records, list(lines)


def _readable(text: str) -> str:
    """One line for the user: colours removed, the API's JSON error body reduced to its message."""
    text = ANSI.sub("", text).strip().removeprefix("[API Error: ")
    if text.startswith("{"):
        body = loads(text.rsplit("]", 1)[0] if not text.endswith("}") else text) or {}
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            text = error["message"]
    return "gemini: " + detail(text.split("\n")[0].rstrip("]"))


def classify(outcome: Outcome) -> Failure | None:
    """The failure class of a Gemini CLI attempt, or ``None`` to let the core decide."""
    if outcome.timed_out:
        return None
    records, lines = _messages(outcome)
    if not records and outcome.exit_code == 0:
        return None
    message = records[-1] if records else ""
    # The decisive texts: the last error record, then the CLI's own stderr lines, latest first (the cause of a
    # quota error, with its wait, is only there). After a successful exit only the records count.
    candidates = [message] if message else []
    if outcome.exit_code != 0:
        candidates += list(reversed(lines))
    text = "\n".join(candidates)
    wait = WAIT.findall(text)
    when = reset_at(wait[0], outcome.finished_at) if wait else None
    for cls, pattern in RULES:
        found = next((c for c in candidates if pattern.search(c)), None)
        if found is None:
            continue
        if cls == "network":
            return Failure(
                "crash", detail=_readable(found).replace("gemini: ", "gemini: cannot reach the model API: ", 1)
            )
        if cls == "no_input":
            return Failure("crash", detail="gemini: the prompt did not arrive on stdin")
        limited = cls in ("usage_limit", "rate_limited")
        return Failure(cls, reset_at=when if limited else None, detail=_readable(found))
    return None


RULES = (
    ("usage_limit", USAGE_LIMIT),
    ("rate_limited", RATE_LIMIT),
    ("auth_error", AUTH),
    ("config_error", CONFIG),
    ("network", NETWORK),
    ("no_input", NO_INPUT),
)

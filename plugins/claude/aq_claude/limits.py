"""Say why a Claude Code run failed, from the engine's own records in its log (streaming).

Trusted records, latest first: the last ``result`` (when it is an error), a main-agent ``assistant`` frame with
an ``error`` field (``authentication_failed``, ``rate_limit``, ``billing_error``, ...), a ``rate_limit_event``
whose status is ``rejected`` (its ``resetsAt`` is the exact reset, epoch seconds), and, when the process exited
non-zero on its own, a plain line the CLI printed (text mode prints its error as the whole answer; stderr carries
start-up refusals). Nothing inside a ``user`` frame (tool results, which can quote anything) is ever read, and
a plain line counts only when it starts with one of the CLI's own messages.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

from aq_core.engine import Failure, Outcome
from aq_core.enginekit import as_float, as_int, detail, iter_lines, reset_at

_TYPE = b'{"type":"'
# Plain lines longer than this are agent text, not a CLI message.
_MAX_PLAIN = 2000
_DETAIL = 200
_PLAN_WINDOWS = (
    "five_hour",
    "seven_day",
    "seven_day_opus",
    "seven_day_sonnet",
    "seven_day_overage_included",
    "overage",
)
_AUTH_KINDS = ("authentication_failed", "oauth_org_not_allowed")
_RATE_KINDS = ("rate_limit", "overloaded")
_APOS = "['\u2019]"

# A plan or quota window (hours to days): "You've hit your session limit · resets 8pm (America/New_York)",
# "You're out of extra usage · resets ...", "Claude AI usage limit reached|1750435200", "5-hour limit reached ∙ ...".
USAGE_LIMIT = re.compile(
    rf"You{_APOS}ve (?:hit|reached) your\b[^\n]{{0,80}}?\blimit\b"
    rf"|You{_APOS}re out of (?:extra usage|usage credits)"
    r"|Your org is out of usage"
    r"|Your group's usage limit is set to \$0"
    r"|\busage limit reached\b"
    r"|\b\d+-hour limit reached\b"
    r"|Credit balance is too low",
    re.IGNORECASE,
)
# A short throttle (seconds to minutes): HTTP 429, the API's rate_limit_error, or a server at capacity (529).
RATE_LIMIT = re.compile(
    r"\b429\b|rate_limit_error|\bRate limit(?:ed| reached| exceeded)\b|Server is temporarily limiting requests"
    r"|\b529\b|overloaded_error|\bOverloaded\b|experiencing high load",
    re.IGNORECASE,
)
AUTH = re.compile(
    r"Not logged in|Please run /login|Invalid API key|OAuth token (?:has )?(?:expired|been revoked)"
    r"|authentication_error|Failed to authenticate|belongs to a disabled organization"
    r"|OAuth authentication is currently not (?:supported|allowed)",
    re.IGNORECASE,
)
CONFIG = re.compile(
    r"cannot be used with root/sudo privileges|requires --verbose|^error: unknown option"
    r"|issue with the selected model|is not available on your \w+ deployment"
    r"|Input must be provided either through stdin",
    re.IGNORECASE | re.MULTILINE,
)
RESUME_MISSING = re.compile(r"No conversation found with session ID|--resume requires a valid session ID")
# Messages the CLI prints as a whole line (text mode prints the result; stderr gets start-up refusals).
_PLAIN_START = re.compile(
    rf"(?:API Error\b|You{_APOS}ve (?:hit|reached) your\b|You{_APOS}re out of (?:extra usage|usage credits)"
    r"|Your org is out of usage|Your group's usage limit|Claude (?:AI )?usage limit reached|\d+-hour limit reached"
    r"|Credit balance is too low|Not logged in|Please run /login|Invalid API key|OAuth token|Failed to authenticate"
    r"|--dangerously-skip-permissions cannot be used|Error: When using --print|error: unknown option"
    r"|There's an issue with the selected model|No conversation found with session ID|Error: --resume requires"
    r"|Error: Input must be provided|Opus is experiencing|Fable is experiencing|Repeated 529)",
)


def _text_of(message: Any) -> str:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    parts = []
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
                parts.append(block["text"])
    return "\n".join(parts)


class _Verdict:
    """What the last records of the log say."""

    def __init__(self) -> None:
        self.order = 0
        self.result: dict[str, Any] | None = None
        self.result_at = -1
        self.error_kind: str | None = None
        self.error_text = ""
        self.error_at = -1
        self.rejected: dict[str, Any] | None = None
        self.plain: str | None = None

    def record(self, obj: Any) -> None:
        if not isinstance(obj, dict):
            return
        self.order += 1
        kind = obj.get("type")
        if kind == "result":
            self.result, self.result_at = obj, self.order
        elif kind == "assistant":
            error = obj.get("error")
            if isinstance(error, str) and error and obj.get("parent_tool_use_id") is None:
                self.error_kind, self.error_text, self.error_at = error, _text_of(obj.get("message")), self.order
        elif kind == "rate_limit_event":
            info = obj.get("rate_limit_info")
            if isinstance(info, dict) and info.get("status") == "rejected":
                self.rejected = info
        elif kind == "system" and obj.get("subtype") == "init":
            # A new process: what an earlier one said no longer decides how this run ended.
            self.result, self.error_kind, self.rejected = None, None, None


def _scan(outcome: Outcome) -> _Verdict:
    verdict = _Verdict()
    loads = json.loads
    for line in iter_lines(outcome.log_path):
        if line[:9] == _TYPE:
            tag = line[9:26]
            if tag.startswith(b"assistant"):
                wanted = b'"error"' in line  # a quote inside a string is escaped: this is the frame's own key
            elif tag.startswith(b"system"):
                wanted = b'"init"' in line
            else:
                wanted = tag.startswith((b"result", b"rate_limit_event"))
            if wanted:
                with contextlib.suppress(ValueError):
                    verdict.record(loads(line))
            continue
        stripped = line.strip()
        first = stripped[:1]
        if first == b"{" or first == b"[":
            try:
                value = loads(stripped)
            except ValueError:
                continue
            for item in value if isinstance(value, list) else (value,):
                verdict.record(item)
            continue
        if stripped and len(stripped) <= _MAX_PLAIN:
            text = stripped.decode("utf-8", "replace")
            # Claude's interactive renderer prefixes some messages; a bare line is what -p prints.
            text = text.lstrip("\u23bf\u23fa\u25cf\u2022 ").strip()
            if _PLAIN_START.match(text):
                verdict.plain = text
    return verdict


def _detail(text: str) -> str:
    return "claude: " + detail(text, _DETAIL)


# Older builds print "Claude AI usage limit reached|1751652000" (epoch seconds of the reset).
_PIPE_EPOCH = re.compile(r"limit\s+reached\s*\|\s*(\d{9,13}(?:\.\d+)?)\b", re.IGNORECASE)


def _printed_reset(text: str, now: float) -> float | None:
    pipe = _PIPE_EPOCH.search(text)
    if pipe:
        at = float(pipe.group(1))
        return at / 1000.0 if at > 1e11 else at  # thirteen digits are milliseconds
    return reset_at(text, now)


def _reset(text: str, rejected: dict[str, Any] | None, now: float) -> float | None:
    if rejected is not None:
        # The CLI's own rate_limit_event has the exact moment; its text rounds it to the minute.
        at = as_float(rejected.get("resetsAt"))
        if at is not None:
            if at > 1e11:
                at /= 1000.0
            if now - 86400 < at < now + 60 * 86400:
                return at
    return _printed_reset(text, now)


def _judge(kind: str | None, text: str, status: int | None, rejected: dict[str, Any] | None, now: float):
    if kind in _AUTH_KINDS:
        return Failure("auth_error", detail=_detail(text or kind))
    if USAGE_LIMIT.search(text) or kind == "billing_error":
        return Failure("usage_limit", reset_at=_reset(text, rejected, now), detail=_detail(text or kind or ""))
    if AUTH.search(text) or status in (401, 403):
        return Failure("auth_error", detail=_detail(text or str(status)))
    if kind in _RATE_KINDS or status in (429, 529) or RATE_LIMIT.search(text):
        if rejected is not None and rejected.get("rateLimitType") in _PLAN_WINDOWS:
            return Failure("usage_limit", reset_at=_reset(text, rejected, now), detail=_detail(text or "rate limit"))
        return Failure("rate_limited", reset_at=_printed_reset(text, now), detail=_detail(text or kind or "429"))
    if kind == "model_not_found" or CONFIG.search(text):
        return Failure("config_error", detail=_detail(text or kind or ""))
    if RESUME_MISSING.search(text):
        # The session to continue is gone; a retry that resumes it again fails the same way, so
        # the core is told to start the next attempt in a new session.
        return Failure("crash", detail=_detail(text), session_lost=True)
    return None


def classify(outcome: Outcome) -> Failure | None:
    """Return the failure the log's last engine records describe, or None when they describe none."""
    verdict = _scan(outcome)
    now = float(outcome.finished_at)
    result = verdict.result
    if result is not None and verdict.result_at > verdict.error_at:
        subtype = result.get("subtype")
        is_error = result.get("is_error") is True or (isinstance(subtype, str) and subtype.startswith("error"))
        if not is_error:
            return None  # the engine says the run succeeded; exit code and timeout are the core's to judge
        texts = []
        if isinstance(result.get("result"), str):
            texts.append(result["result"])
        errors = result.get("errors")
        if isinstance(errors, list):
            texts.extend(e for e in errors if isinstance(e, str))
        kind = None
        if verdict.error_kind is not None:
            kind = verdict.error_kind
            if verdict.error_text and verdict.error_text not in texts:
                texts.append(verdict.error_text)
        text = "\n".join(texts)
        failure = _judge(kind, text, as_int(result.get("api_error_status")), verdict.rejected, now)
        if failure is not None:
            return failure
        if subtype == "error_max_budget_usd":
            return Failure("crash", detail="claude: stopped at the job's budget (--max-budget-usd)")
        if subtype == "error_max_turns":
            return Failure("crash", detail="claude: stopped at its maximum number of turns")
    elif verdict.error_kind is not None:
        failure = _judge(verdict.error_kind, verdict.error_text, None, verdict.rejected, now)
        if failure is not None:
            return failure
    # A plain line is the CLI's only when it stopped on its own with an error: not killed, not a success (an
    # answer in text mode may quote anything).
    code = outcome.exit_code
    if verdict.plain is not None and not outcome.timed_out and code is not None and code > 0:
        return _judge(None, verdict.plain, None, verdict.rejected, now)
    return None

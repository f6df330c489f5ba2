"""Name why a Qwen Code attempt failed, from the CLI's own records: the ``result`` with ``is_error`` (its
``error.message``), an ``assistant`` reply that is an ``[API Error: ...]`` notice, and the plain lines the CLI
prints on stderr when it stops (start-up refusals, budget aborts). Only when it exited non-zero by itself.

| class | what the CLI printed (0.24.4) |
|---|---|
| ``usage_limit`` | ``[API Error: 429 The usage limit has been reached]`` (no reset printed), ``Quota exhausted: ...`` (its own fast-fail for a quota that names its reset), ``insufficient_quota``, ``You exceeded your current quota`` |
| ``rate_limited`` | ``[API Error: 429 Rate limit reached ... Please try again in 1s ...]`` (after its own retries), HTTP 429, ``Throttling`` |
| ``auth_error`` | ``No auth type is selected ...``, ``[API Error: 401 Incorrect API key provided ...]``, 401/403 |
| ``config_error`` | an unknown option or an invalid ``--auth-type`` value |
| ``crash`` with a detail | ``Connection error. (cause: getaddrinfo ENOTFOUND ...)`` (no network, after ~90 s of retries), ``--max-wall-time`` / ``--max-tool-calls`` exceeded (exit 55), ``No input provided via stdin`` |
"""

from __future__ import annotations

import re
from collections import deque

from aq_core.engine import Failure, Outcome
from aq_core.enginekit import detail, iter_lines, loads, reset_at

USAGE_LIMIT = re.compile(
    r"Quota exhausted:|insufficient_quota|usage_limit_reached|usage limit has been reached"
    r"|exceeded your current quota|quota (?:has been )?(?:exhausted|exceeded).*reset|Arrearage|free allocated quota",
    re.IGNORECASE,
)
RATE_LIMIT = re.compile(
    r"API Error: 429\b|\b(?:status|code)\W{0,3}429\b|rate[ _-]?limit|too many requests|Throttling"
    r"|requests? limit exceeded|overloaded",
    re.IGNORECASE,
)
AUTH = re.compile(
    r"No auth type is selected|Incorrect API key|invalid[ _]api[ _]key|API Error: 40[13]\b"
    r"|\b(?:status|code)\W{0,3}40[13]\b|Unauthorized"
    r"|authentication|API key (?:is )?(?:missing|not valid|invalid)|OPENAI_API_KEY",
    re.IGNORECASE,
)
CONFIG = re.compile(r"Unknown arguments?:|Invalid values?:|Argument check failed", re.IGNORECASE)
NETWORK = re.compile(
    r"Connection error|ENOTFOUND|ECONNREFUSED|EAI_AGAIN|getaddrinfo|fetch failed|ETIMEDOUT|socket hang up",
    re.IGNORECASE,
)
BUDGET = re.compile(r"Run aborted: .*exceeded|Maximum session turns|max-tool-calls", re.IGNORECASE)
NO_INPUT = re.compile(r"No input provided via stdin", re.IGNORECASE)
NOISE = re.compile(r"^(?:Ripgrep not available|Warning: running headless|\s+at )")
TAIL = 400


def _texts(outcome: Outcome) -> tuple[list[str], list[str]]:
    """(error messages from the CLI's JSON records, the last plain lines), oldest first."""
    records: list[str] = []
    lines: deque[str] = deque(maxlen=TAIL)
    for raw in iter_lines(outcome.log_path):
        text = raw.decode("utf-8", "replace")
        stripped = text.lstrip("[")  # json mode prints one array
        if stripped.startswith('{"type":'):
            obj = loads(stripped.rstrip("]")) or {}
            kind = obj.get("type")
            if kind == "result":
                error = obj.get("error")
                if obj.get("is_error") and isinstance(error, dict) and isinstance(error.get("message"), str):
                    records.append(error["message"])
                elif not obj.get("is_error"):
                    records.clear()  # a later successful process answers for the attempt
            elif kind == "assistant" and isinstance(obj.get("message"), dict):
                for block in obj["message"].get("content") or []:
                    body = block.get("text") if isinstance(block, dict) else None
                    if isinstance(body, str) and body.startswith("[API Error:"):
                        records.append(body)
            continue
        if text.strip() and not NOISE.match(text):
            lines.append(text)
    return records, list(lines)


def _readable(text: str) -> str:
    return "qwen: " + detail(text.strip().removeprefix("[API Error: ").split("\n")[0].rstrip("]"))


RULES = (
    ("usage_limit", USAGE_LIMIT),
    ("rate_limited", RATE_LIMIT),
    ("auth_error", AUTH),
    ("config_error", CONFIG),
)


def classify(outcome: Outcome) -> Failure | None:
    """The failure class of a Qwen Code attempt, or ``None`` to let the core decide."""
    if outcome.timed_out or outcome.exit_code == 0:
        return None
    records, lines = _texts(outcome)
    candidates = list(reversed(records)) + list(reversed(lines))
    for cls, pattern in RULES:
        found = next((c for c in candidates if pattern.search(c)), None)
        if found is not None:
            limited = cls in ("usage_limit", "rate_limited")
            when = reset_at(found, outcome.finished_at) if limited else None
            return Failure(cls, reset_at=when, detail=_readable(found))
    found = next((c for c in candidates if NETWORK.search(c)), None)
    if found is not None:
        return Failure("crash", detail=_readable(found).replace("qwen: ", "qwen: cannot reach the model API: ", 1))
    found = next((c for c in candidates if BUDGET.search(c)), None)
    if found is not None:
        return Failure("crash", detail=_readable(found))
    if any(NO_INPUT.search(c) for c in candidates):
        return Failure("crash", detail="qwen: the prompt did not arrive on stdin")
    return None

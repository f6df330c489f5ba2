"""Name why an aider attempt failed, from what aider printed (text only).

aider **exits 0 when its model call failed**: it prints the litellm error (``litellm.RateLimitError: ...``,
possibly wrapped over several lines, then its own explanation such as "The API provider has rate limited you"),
retries the retryable ones with waits doubling from 0.25 s to 32 s, and gives up silently. So the class is read
from the output, whatever the exit code: the last error printed after the last usage line (``Tokens: ...``)
decides. With no usage line and no error (an empty prompt: aider prints its banner and stops), the attempt did
nothing and is a ``crash``. aider's wait for an OpenRouter browser login (no model and no key) is an
``auth_error``.
"""

from __future__ import annotations

import re
from pathlib import Path

from aq_core.engine import Failure, Outcome
from aq_core.enginekit import detail, iter_lines, reset_at

ERROR_HEAD = re.compile(rb"^litellm\.[A-Za-z]+(?:Error|Exception|Timeout)\b|^litellm\.Timeout\b")
USAGE_LINE = b"Tokens: "
LOGIN_WAIT = (b"Waiting up to 5 minutes for you to finish in the browser", b"No LLM model was specified")
USAGE_LIMIT = re.compile(
    r"insufficient_quota|exceeded your current quota|usage_limit_reached|usage limit has been reached"
    r"|quota exceeded|resource_exhausted|insufficient credits|credit balance is too low|billing",
    re.IGNORECASE,
)
AUTH = re.compile(
    r"AuthenticationError|PermissionDeniedError|invalid[ _]api[ _]key|incorrect api key|api_key client option"
    r"|not able to authenticate you",
    re.IGNORECASE,
)
RATE_LIMIT = re.compile(r"RateLimitError|rate[ _-]?limit|too many requests", re.IGNORECASE)
MAX_MESSAGE = 4096


def classify(outcome: Outcome) -> Failure | None:
    """Return the failure class of an aider attempt, or ``None`` to let the core decide."""
    try:
        error, used, login = _scan(outcome.log_path)
    except OSError:
        return None
    if login:
        return Failure("auth_error", detail="aider: no model and no API key (it waits for a browser login)")
    if outcome.timed_out:
        return None
    if error:
        why = "aider: " + detail(error)
        if USAGE_LIMIT.search(error):
            return Failure("usage_limit", reset_at=_reset(error, outcome.finished_at), detail=why)
        if AUTH.search(error):
            return Failure("auth_error", detail=why)
        if RATE_LIMIT.search(error):
            return Failure("rate_limited", reset_at=_reset(error, outcome.finished_at), detail=why)
        return Failure("crash", detail=why)  # exit 0 or not: the model call failed
    if outcome.exit_code == 0 and not used:
        return Failure("crash", detail="aider: no model call was made (empty prompt?)")
    return None


def _scan(log_path: Path) -> tuple[str | None, bool, bool]:
    """Return the last error after the last usage line, whether a usage line exists, and the login wait."""
    error: list[str] | None = None
    last: str | None = None
    used = login = False
    for line in iter_lines(log_path):
        if line.startswith(USAGE_LINE):
            used, last, error = True, None, None
            continue
        if ERROR_HEAD.match(line):
            error = [line.decode("utf-8", "replace").strip()]
            last = None
        elif error is not None:
            # The message goes on until a blank line or aider's retry notice.
            if not line.strip() or line.startswith(b"Retrying in "):
                last, error = " ".join(error)[:MAX_MESSAGE], None
            elif sum(map(len, error)) < MAX_MESSAGE:
                error.append(line.decode("utf-8", "replace").strip())
        if line.startswith(LOGIN_WAIT):
            login = True
    if error is not None:
        last = " ".join(error)[:MAX_MESSAGE]
    return last, used, login


def _reset(message: str, now: float) -> float | None:
    found = reset_at(message, now)
    return found if found is not None and found > now else None

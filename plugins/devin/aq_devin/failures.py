"""Recognise how a ``devin -p`` run ended from the wording it printed (tests/fixtures/SOURCES.md).

Devin reports a failed run as one ``Error: ...`` line on stderr and exits non-zero (observed on
3000.2.17 and 3000.11.1); print-mode stdout is only the agent's answer. So a message counts only on a
line that starts with ``Error:`` (or with the message itself), and only when the process did not exit
0: an answer that quotes "Not logged in" never pauses the engine.
"""

from __future__ import annotations

import re
from pathlib import Path

from aq_core.engine import Failure, Outcome
from aq_core.enginekit import detail, iter_lines, reset_at

#: Quota wording from the Devin 3000.11.1 binary: a plan or credit window, not a short throttle.
LIMIT_PHRASES = (
    "quota exhausted",
    "usage limit reached",
    "usage paused",
    "purchase on-demand usage or turn on auto-reload",
)
#: Not signed in, or signed in without the right to use the CLI.
AUTH_PHRASES = (
    "not logged in",
    "devin needs authentication",
    "authentication required",
    "cli access is disabled for this user",
)
#: Printed, with exit 0, when print mode refused a tool call that needed approval.
REJECTED_TOOL_CALL = "warning: rejected a tool call that requires confirmation"

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_UNKNOWN_MODEL = re.compile(r"^error: unknown model:", re.IGNORECASE)
_PROMPT_FILE = re.compile(r"^error: failed to read prompt file", re.IGNORECASE)
_BAD_ARGUMENT = re.compile(r"^error: unexpected argument '([^']{1,80})' found")
_DETAIL_CHARS = 200


def _clean(raw: bytes) -> str:
    return _ANSI.sub("", raw.decode("utf-8", "replace")).strip()


def _match(line: str) -> tuple[str, str] | None:
    """Return ``(kind, line)`` when ``line`` is one of Devin's own failure lines."""
    lower = line.lower()
    if lower.startswith("error:"):
        body = lower[len("error:") :].lstrip()
        for phrase in LIMIT_PHRASES:
            if phrase in body:
                return "usage_limit", line
        for phrase in AUTH_PHRASES:
            if phrase in body:
                return "auth_error", line
        if _UNKNOWN_MODEL.match(line) or _PROMPT_FILE.match(line) or _BAD_ARGUMENT.match(line):
            return "crash", line
        return None
    for phrase in LIMIT_PHRASES:
        if lower.startswith(phrase):
            return "usage_limit", line
    for phrase in AUTH_PHRASES:
        if lower.startswith(phrase):
            return "auth_error", line
    return None


def _scan(log_path: Path) -> tuple[tuple[str, str] | None, int]:
    """Return the last failure line Devin printed and how many tool calls print mode refused."""
    last: tuple[str, str] | None = None
    refused = 0
    try:
        for raw in iter_lines(log_path):
            if len(raw) > 4096:  # Devin's own lines are short; long ones are agent output
                continue
            line = _clean(raw)
            if not line or line.startswith("aq:"):
                continue
            if line.lower().startswith(REJECTED_TOOL_CALL):
                refused += 1
                continue
            found = _match(line)
            if found is not None:
                last = found
    except OSError:
        pass
    return last, refused


def classify(outcome: Outcome) -> Failure | None:
    """Return the class of a Devin attempt's outcome, or ``None`` to let the core decide."""
    if outcome.timed_out:
        return None
    last, refused = _scan(outcome.log_path)
    if outcome.exit_code == 0:
        if refused:
            calls = "a tool call" if refused == 1 else f"{refused} tool calls"
            return Failure(
                "ok",
                detail=f"devin refused {calls} that needed approval (print mode cannot ask): "
                "set `yolo: true` or allow the tools in Devin's permissions",
            )
        return None
    if last is None:
        return None
    kind, line = last
    if kind == "usage_limit":
        return Failure(
            "usage_limit", reset_at=reset_at(line, outcome.finished_at), detail="devin: " + detail(line, _DETAIL_CHARS)
        )
    if kind == "auth_error":
        return Failure("auth_error", detail="devin: " + detail(line, _DETAIL_CHARS))
    bad = _BAD_ARGUMENT.match(line)
    if bad:
        return Failure("crash", detail=f"this devin version does not accept {bad.group(1)}: update devin")
    return Failure("crash", detail="devin: " + detail(line, _DETAIL_CHARS))

"""Read the usage aider printed in an attempt's log (text only: aider has no JSON output).

aider prints one usage line per message it sends (aider/coders/base_coder.py
``calculate_and_show_tokens_and_cost``)::

    Tokens: 9.6k sent, 1.2k cache write, 3.4k cache hit, 56 received. Cost: $0.05 message, $0.21 session.

The token counts are display-rounded (``utils.format_tokens``: exact below 1000, ``9.6k`` below 10 000, ``12k``
above; ``M`` is read too), so figures read from ``k`` forms are approximate (``extra.tokens_rounded``). The cost
part appears only when litellm knows the model's price; it goes on a line of its own when both cache fields are
printed. Per message the token figures are that message's, so they are summed; the cost is the last line's
``session`` figure (aider's own running total, rounded to cents, or to two significant digits below a cent).
The model is the ``Model:`` / ``Main model:`` line of aider's banner. aider has no tool calls (it edits files
from the answer's text): ``Applied edit to <file>`` lines are counted in ``extra.edits_applied``.
"""

from __future__ import annotations

import re
from pathlib import Path

from aq_core.enginekit import iter_lines
from aq_core.usage import Usage

TOKENS = re.compile(
    r"^Tokens: (?P<sent>[\d.]+[kM]?) sent"
    r"(?:, (?P<write>[\d.]+[kM]?) cache write)?"
    r"(?:, (?P<hit>[\d.]+[kM]?) cache hit)?"
    r", (?P<received>[\d.]+[kM]?) received\."
)
COST = re.compile(r"Cost: \$(?P<message>\d+(?:\.\d+)?) message, \$(?P<session>\d+(?:\.\d+)?) session\.")
MODEL = re.compile(r"^(?:Main model|Model): (\S+) with ")
APPLIED = b"Applied edit to "
SCALE = {"k": 1_000, "M": 1_000_000}


def parse(log_path: Path) -> Usage:
    """Return the figures of every usage line in the log (absent ones stay ``None``)."""
    usage = Usage()
    sums = {"sent": 0, "write": 0, "hit": 0, "received": 0}
    lines = 0
    rounded = False
    cost: float | None = None
    edits = 0
    pending: str | None = None  # a usage line whose cost may follow on the next line
    for raw in iter_lines(log_path):
        if raw.startswith(APPLIED):
            edits += 1
            continue
        if not raw.startswith((b"Tokens: ", b"Cost: ", b"Model: ", b"Main model: ", b"$", b"session.")):
            pending = None
            continue
        line = raw.decode("utf-8", "replace").rstrip()
        if pending is not None and line.startswith(("Cost: ", "$", "session.")):
            line, pending = pending + " " + line, None  # the cost (or a wrapped part of it) on the next line
            found = COST.search(line)
            if found:
                cost = float(found["session"])
            continue
        model = MODEL.match(line)
        if model:
            usage.model = model[1]
            continue
        match = TOKENS.match(line)
        if match is None:
            continue
        lines += 1
        for key, text in match.groupdict().items():
            if text is None:
                continue
            number, approximate = _count(text)
            sums[key] += number
            rounded = rounded or approximate
        found = COST.search(line, match.end())
        if found:
            cost = float(found["session"])
            pending = None
        else:
            pending = line
    if lines:
        usage.tokens_in = sums["sent"]
        usage.tokens_cached = min(sums["hit"], sums["sent"])
        usage.tokens_out = sums["received"]
        usage.turns = lines
        usage.extra["tokens_cache_write"] = sums["write"]
        usage.extra["tokens_rounded"] = rounded
    if cost is not None:
        usage.cost_usd = cost
    if edits:
        usage.extra["edits_applied"] = edits
    return usage


def _count(text: str) -> tuple[int, bool]:
    """Return a printed count as an int, and whether it was rounded for display (``9.6k``)."""
    scale = SCALE.get(text[-1:], 1)
    number = text[:-1] if scale > 1 else text
    try:
        return round(float(number) * scale), scale > 1
    except ValueError:
        return 0, False

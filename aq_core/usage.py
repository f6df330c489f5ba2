"""The usage figures an engine reports for one attempt (the ``Usage`` record and its seven fields).

The parsing helpers plugins share live in ``aq_core.enginekit``; ``iter_lines``, ``iter_json_objects``,
``as_int`` and ``as_float`` stay importable from here for plugins written before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from aq_core.enginekit import as_float, as_int, iter_lines
from aq_core.enginekit import iter_json as iter_json_objects

__all__ = ["INT_FIELDS", "USAGE_FIELDS", "Usage", "as_float", "as_int", "iter_json_objects", "iter_lines"]

#: The seven usage fields, in display order. Conventions (engine-formats §0): ``tokens_in`` includes
#: cache reads and writes, ``tokens_cached`` is cache reads only, ``tokens_out`` includes reasoning,
#: ``cost_usd`` is what the engine reported.
USAGE_FIELDS = ("model", "tokens_in", "tokens_out", "tokens_cached", "cost_usd", "turns", "tool_calls")
INT_FIELDS = ("tokens_in", "tokens_out", "tokens_cached", "turns", "tool_calls")


@dataclass
class Usage:
    """Usage found in a log. ``None`` means "the log does not say": never 0 for unknown.

    ``extra`` keeps raw engine figures that do not map onto the seven fields (cache writes, premium
    requests, the engine's session id under ``session_id``, its version); the core records
    ``session_id`` for resuming and ignores the rest of ``extra`` in totals.
    """

    model: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    tokens_cached: int | None = None
    cost_usd: float | None = None
    turns: int | None = None
    tool_calls: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def figures(self) -> dict[str, Any]:
        """Return the known figures among the seven fields (absent ones left out)."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name in USAGE_FIELDS and getattr(self, f.name) is not None
        }

    @property
    def session_id(self) -> str | None:
        value = self.extra.get("session_id")
        return value if isinstance(value, str) and value else None

"""List prices of the OpenAI models Codex runs, for aq's cost estimate (Codex prints tokens, never a cost).

USD per million tokens (OpenAI's API price list of 2026-11-01); ``config.yaml`` ``prices:`` overrides
them, e.g. for a newer model (``gpt-5.4`` is not ``gpt-5``: a prefix matches only before a ``-``).
"""

from __future__ import annotations

from aq_core.engine import ModelPrice

#: Model-id prefix -> price; the longest matching prefix wins ("gpt-5-mini" before "gpt-5").
PRICES = {
    "gpt-5-mini": ModelPrice(input=0.25, cached=0.025, output=2.0),
    "gpt-5-nano": ModelPrice(input=0.05, cached=0.005, output=0.4),
    "gpt-5": ModelPrice(input=1.25, cached=0.125, output=10.0),
    "gpt-4.1-mini": ModelPrice(input=0.4, cached=0.1, output=1.6),
    "gpt-4.1": ModelPrice(input=2.0, cached=0.5, output=8.0),
    "o4-mini": ModelPrice(input=1.1, cached=0.275, output=4.4),
}

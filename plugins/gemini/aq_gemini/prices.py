"""List prices of the Gemini models Gemini CLI runs, for aq's cost estimate (the CLI prints tokens, never a cost).

USD per million tokens, Google's Gemini API price list (paid tier, prompts up to 200k tokens) as of 2026-12;
``config.yaml`` ``prices:`` overrides them, e.g. for a newer model. A prefix matches only before a ``-``.
"""

from __future__ import annotations

from aq_core.engine import ModelPrice

#: Model-id prefix -> price; the longest matching prefix wins ("gemini-2.5-flash-lite" before "gemini-2.5-flash").
PRICES = {
    "gemini-3-pro": ModelPrice(input=2.0, cached=0.2, output=12.0),
    "gemini-3-flash": ModelPrice(input=0.5, cached=0.05, output=3.0),
    "gemini-2.5-pro": ModelPrice(input=1.25, cached=0.125, output=10.0),
    "gemini-2.5-flash": ModelPrice(input=0.3, cached=0.03, output=2.5),
    "gemini-2.5-flash-lite": ModelPrice(input=0.1, cached=0.01, output=0.4),
}

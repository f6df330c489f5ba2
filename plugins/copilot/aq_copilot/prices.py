"""List prices of the models the Copilot CLI can run, for aq's cost estimate when a run printed tokens but no cost.

USD per million tokens (the model vendors' API price lists of 2026-11-01): an estimate of the
tokens' worth at list prices, not what your Copilot plan charges. ``config.yaml`` ``prices:`` overrides them.
"""

from __future__ import annotations

from aq_core.engine import ModelPrice

_OPUS_4_5 = ModelPrice(input=5.0, cached=0.50, output=25.0)
_OPUS_4 = ModelPrice(input=15.0, cached=1.50, output=75.0)

#: Model-id prefix -> price; the longest matching prefix wins ("gpt-5-mini" before "gpt-5").
PRICES = {
    "claude-opus-4-5": _OPUS_4_5,
    "claude-opus-4-6": _OPUS_4_5,
    "claude-opus-4-7": _OPUS_4_5,
    "claude-opus-4-8": _OPUS_4_5,
    "claude-opus-4-1": _OPUS_4,
    "claude-opus-4": _OPUS_4,
    "claude-sonnet-4": ModelPrice(input=3.0, cached=0.30, output=15.0),
    "claude-haiku-4": ModelPrice(input=1.0, cached=0.10, output=5.0),
    "claude-3-5-haiku": ModelPrice(input=0.8, cached=0.08, output=4.0),
    "gpt-5-mini": ModelPrice(input=0.25, cached=0.025, output=2.0),
    "gpt-5-nano": ModelPrice(input=0.05, cached=0.005, output=0.4),
    "gpt-5": ModelPrice(input=1.25, cached=0.125, output=10.0),
    "gpt-4.1-mini": ModelPrice(input=0.4, cached=0.1, output=1.6),
    "gpt-4.1": ModelPrice(input=2.0, cached=0.5, output=8.0),
    "o4-mini": ModelPrice(input=1.1, cached=0.275, output=4.4),
}

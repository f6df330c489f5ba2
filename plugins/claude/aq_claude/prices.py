"""List prices of the Claude models, for aq's cost estimate when a run printed tokens but no cost.

USD per million tokens (Anthropic's price list of 2026-11-01). ``claude -p`` prints its own cost, so
these count only for a run killed before its result record; ``config.yaml`` ``prices:`` overrides them.
"""

from __future__ import annotations

from aq_core.engine import ModelPrice

#: Model-id prefix -> price; the longest matching prefix wins ("claude-opus-4-1" before "claude-opus-4").
PRICES = {
    "claude-opus-4-5": ModelPrice(input=5.0, cached=0.50, output=25.0),
    "claude-opus-4-6": ModelPrice(input=5.0, cached=0.50, output=25.0),
    "claude-opus-4-7": ModelPrice(input=5.0, cached=0.50, output=25.0),
    "claude-opus-4-8": ModelPrice(input=5.0, cached=0.50, output=25.0),
    "claude-opus-4-1": ModelPrice(input=15.0, cached=1.50, output=75.0),
    "claude-opus-4": ModelPrice(input=15.0, cached=1.50, output=75.0),
    "claude-sonnet-4": ModelPrice(input=3.0, cached=0.30, output=15.0),
    "claude-haiku-4": ModelPrice(input=1.0, cached=0.10, output=5.0),
    "claude-3-5-haiku": ModelPrice(input=0.8, cached=0.08, output=4.0),
}

"""List prices of models opencode runs, for aq's estimate when opencode prints a cost of 0 (an unpriced model).

Keys are opencode's ``provider/model`` ids (a prefix matches dated and variant ids); USD per million tokens.
"""

from __future__ import annotations

from aq_core.engine import ModelPrice

PRICES: dict[str, ModelPrice] = {
    "anthropic/claude-opus-4-5": ModelPrice(input=5.0, cached=0.50, output=25.0, cache_write=6.25),
    "anthropic/claude-opus-4-1": ModelPrice(input=15.0, cached=1.50, output=75.0, cache_write=18.75),
    "anthropic/claude-sonnet-4": ModelPrice(input=3.0, cached=0.30, output=15.0, cache_write=3.75),
    "anthropic/claude-haiku-4": ModelPrice(input=1.0, cached=0.10, output=5.0, cache_write=1.25),
    "openai/gpt-5": ModelPrice(input=1.25, cached=0.125, output=10.0),
    "openai/gpt-5-mini": ModelPrice(input=0.25, cached=0.025, output=2.0),
    "openai/gpt-5-nano": ModelPrice(input=0.05, cached=0.005, output=0.4),
    "openai/gpt-4.1-mini": ModelPrice(input=0.4, cached=0.1, output=1.6),
    "openai/gpt-4.1": ModelPrice(input=2.0, cached=0.5, output=8.0),
}

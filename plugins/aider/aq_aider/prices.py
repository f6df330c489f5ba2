"""List prices of models aider runs, for aq's estimate when aider prints no cost (a model litellm cannot price).

Keys are aider's model names (litellm ids, a prefix matches dated and variant ids); USD per million tokens.
"""

from __future__ import annotations

from aq_core.engine import ModelPrice

PRICES: dict[str, ModelPrice] = {
    "anthropic/claude-opus-4-5": ModelPrice(input=5.0, cached=0.50, output=25.0, cache_write=6.25),
    "anthropic/claude-sonnet-4": ModelPrice(input=3.0, cached=0.30, output=15.0, cache_write=3.75),
    "anthropic/claude-haiku-4": ModelPrice(input=1.0, cached=0.10, output=5.0, cache_write=1.25),
    "claude-opus-4-5": ModelPrice(input=5.0, cached=0.50, output=25.0, cache_write=6.25),
    "claude-sonnet-4": ModelPrice(input=3.0, cached=0.30, output=15.0, cache_write=3.75),
    "claude-haiku-4": ModelPrice(input=1.0, cached=0.10, output=5.0, cache_write=1.25),
    "sonnet": ModelPrice(input=3.0, cached=0.30, output=15.0, cache_write=3.75),
    "gpt-5": ModelPrice(input=1.25, cached=0.125, output=10.0),
    "openai/gpt-5": ModelPrice(input=1.25, cached=0.125, output=10.0),
    "gpt-4o-mini": ModelPrice(input=0.15, cached=0.075, output=0.6),
    "openai/gpt-4o-mini": ModelPrice(input=0.15, cached=0.075, output=0.6),
    "gpt-5-mini": ModelPrice(input=0.25, cached=0.025, output=2.0),
    "openai/gpt-5-mini": ModelPrice(input=0.25, cached=0.025, output=2.0),
    "gpt-4o": ModelPrice(input=2.5, cached=1.25, output=10.0),
    "openai/gpt-4o": ModelPrice(input=2.5, cached=1.25, output=10.0),
}

"""List prices of the Qwen models Qwen Code runs, for aq's cost estimate (the CLI prints tokens, never a cost).

USD per million tokens, Alibaba Cloud Model Studio's international price list (first tier, prompts up to 32k
tokens) as of 2026-12; ``config.yaml`` ``prices:`` overrides them, e.g. for another provider or a newer model.
A prefix matches only before a ``-``.
"""

from __future__ import annotations

from aq_core.engine import ModelPrice

#: Model-id prefix -> price; the longest matching prefix wins ("qwen3-coder-flash" before "qwen3-coder").
PRICES = {
    "qwen3-coder-plus": ModelPrice(input=1.0, cached=0.1, output=5.0),
    "qwen3-coder-flash": ModelPrice(input=0.3, cached=0.03, output=1.5),
    "qwen3-max": ModelPrice(input=1.2, cached=0.12, output=6.0),
    "qwen-plus": ModelPrice(input=0.4, cached=0.04, output=1.2),
    "qwen-flash": ModelPrice(input=0.05, cached=0.005, output=0.4),
}

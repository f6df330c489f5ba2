"""A versioned price table for an optional, labelled cost estimate when an engine prints tokens but no cost."""

from __future__ import annotations

from typing import Any

#: The table's version, recorded in meta (``pricing``) beside every estimate made with it.
VERSION = "2026-11-01"

# USD per million tokens: (input, cached input read, output). Longest matching prefix of the model
# id wins; ids are matched lower-case, with any "[...]" suffix (e.g. "[1m]") and date stamp ignored.
PRICES: dict[str, tuple[float, float, float]] = {
    "claude-opus-4-5": (5.0, 0.50, 25.0),
    "claude-opus-4-6": (5.0, 0.50, 25.0),
    "claude-opus-4-7": (5.0, 0.50, 25.0),
    "claude-opus-4-8": (5.0, 0.50, 25.0),
    "claude-opus-4-1": (15.0, 1.50, 75.0),
    "claude-opus-4": (15.0, 1.50, 75.0),
    "claude-sonnet-4": (3.0, 0.30, 15.0),
    "claude-haiku-4": (1.0, 0.10, 5.0),
    "claude-3-5-haiku": (0.8, 0.08, 4.0),
    "gpt-5-mini": (0.25, 0.025, 2.0),
    "gpt-5-nano": (0.05, 0.005, 0.4),
    "gpt-5": (1.25, 0.125, 10.0),
    "gpt-4.1-mini": (0.4, 0.1, 1.6),
    "gpt-4.1": (2.0, 0.5, 8.0),
    "o4-mini": (1.1, 0.275, 4.4),
}


def price_for(model: str) -> tuple[float, float, float] | None:
    """Return the (input, cached, output) prices for ``model``, or None when the table has none."""
    name = model.lower().split("[", 1)[0].strip()
    best = None
    for prefix, prices in PRICES.items():
        # "gpt-5-2025-08-07" is gpt-5; "gpt-5.4" is a newer model the table does not know.
        if not (name == prefix or name.startswith(prefix + "-")):
            continue
        if best is None or len(prefix) > len(best[0]):
            best = (prefix, prices)
    return best[1] if best else None


def estimate(figures: dict[str, Any]) -> float | None:
    """Estimate ``cost_usd`` from tokens and model; None when the engine reported a cost or data is missing.

    ``tokens_in`` includes cache reads (charged at the cached price); cache writes are not known
    separately and are charged as input, so the estimate errs high rather than low.
    """
    if figures.get("cost_usd") is not None:
        return None
    model, tokens_in, tokens_out = figures.get("model"), figures.get("tokens_in"), figures.get("tokens_out")
    if not isinstance(model, str) or not isinstance(tokens_in, int) or not isinstance(tokens_out, int):
        return None
    prices = price_for(model)
    if prices is None:
        return None
    cached = figures.get("tokens_cached") if isinstance(figures.get("tokens_cached"), int) else 0
    cached = min(cached, tokens_in)
    price_in, price_cached, price_out = prices
    cost = ((tokens_in - cached) * price_in + cached * price_cached + tokens_out * price_out) / 1_000_000
    return round(cost, 6)

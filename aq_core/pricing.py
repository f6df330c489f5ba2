"""The arithmetic of an optional, labelled cost estimate when an engine prints tokens but no cost.

The prices are not the core's: each engine plugin declares the models it runs (``Engine.prices``) and
``config.yaml`` ``prices:`` overrides them. This module matches a model id to a price and multiplies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aq_core.engine import ModelPrice

#: Recorded in meta as ``pricing`` when the price came from ``config.yaml``.
CONFIG_SOURCE = "config.yaml"


@dataclass(frozen=True)
class Estimate:
    """An estimated cost and where its price came from (recorded in meta as ``pricing``)."""

    cost_usd: float
    source: str


def match(model: str, prices: Mapping[str, ModelPrice]) -> str | None:
    """Return the longest prefix in ``prices`` that names ``model``, or None.

    Ids are matched lower-case, with any ``[...]`` suffix (e.g. ``[1m]``) ignored; a prefix matches the
    id itself or the id followed by ``-`` (a date stamp or variant): ``acme-2`` prices ``acme-2`` and
    ``acme-2-20260101`` but not ``acme-2.5``, a newer model the table does not know.
    """
    name = model.lower().split("[", 1)[0].strip()
    best: str | None = None
    for prefix in prices:
        key = prefix.lower()
        if (name == key or name.startswith(key + "-")) and (best is None or len(key) > len(best)):
            best = prefix
    return best


def cost(price: ModelPrice, figures: Mapping[str, Any], cache_write: int | None = None) -> float | None:
    """Return the cost of ``figures`` (``tokens_in``, ``tokens_cached``, ``tokens_out``) at ``price``.

    ``tokens_in`` includes cache reads (charged at the cached price) and cache writes: those are
    charged at ``price.cache_write`` when both it and ``cache_write`` (the written tokens) are known,
    else as input, so the estimate errs high rather than low. None when tokens are missing.
    """
    tokens_in, tokens_out = figures.get("tokens_in"), figures.get("tokens_out")
    if not _count(tokens_in) or not _count(tokens_out):
        return None
    cached = figures.get("tokens_cached") if _count(figures.get("tokens_cached")) else 0
    cached = min(cached, tokens_in)
    written = min(cache_write, tokens_in - cached) if price.cache_write is not None and _count(cache_write) else 0
    plain = tokens_in - cached - written
    total = plain * price.input + cached * price.cached + tokens_out * price.output
    if written:
        total += written * price.cache_write
    return round(total / 1_000_000, 6)


def estimate(
    figures: Mapping[str, Any],
    prices: Mapping[str, ModelPrice],
    overrides: Mapping[str, ModelPrice] | None = None,
    source: str = "",
    cache_write: int | None = None,
) -> Estimate | None:
    """Estimate ``cost_usd``; None when the engine reported a cost, the model has no price or data is missing.

    ``prices`` is the engine's table (labelled ``source`` in meta), ``overrides`` the queue's
    ``config.yaml`` ``prices:``; the longest matching prefix of either wins, ``config.yaml`` on a tie.
    """
    if figures.get("cost_usd") is not None:
        return None
    model = figures.get("model")
    if not isinstance(model, str):
        return None
    merged = {**prices, **(overrides or {})}
    prefix = match(model, merged)
    if prefix is None:
        return None
    value = cost(merged[prefix], figures, cache_write)
    if value is None:
        return None
    from_config = overrides is not None and prefix in overrides
    return Estimate(value, CONFIG_SOURCE if from_config else source)


def for_engine(
    engine: str,
    figures: Mapping[str, Any],
    overrides: Mapping[str, ModelPrice] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Estimate | None:
    """Estimate with the prices the installed ``engine`` declares (``Estimate`` or None).

    ``extra`` is the attempt's ``Usage.extra`` (its ``tokens_cache_write``, when the engine reports
    cache writes apart). The estimate's ``source`` is the distribution and version that declared the
    price (``aq-myengine 0.1.0``), or ``config.yaml``.
    """
    from aq_core import plugins

    installed = plugins.installed_engines().get(engine)
    prices = installed.engine.prices if installed is not None else {}
    source = f"{installed.distribution} {installed.version}".strip() if installed is not None else ""
    written = (extra or {}).get("tokens_cache_write")
    return estimate(figures, prices, overrides, source or engine, written if _count(written) else None)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0

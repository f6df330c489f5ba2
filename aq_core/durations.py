"""Durations as job files write them (``90``, ``90s``, ``5m``, ``4h``, ``1h30m``, ``2d``), and how
durations and token counts are shown."""

from __future__ import annotations

import re

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
MAX_SECONDS = 366 * 86400


def parse_duration(value: object) -> float:
    """Return ``value`` in seconds; raise ``ValueError`` with a one-line reason when it is not one."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 90s, 5m, 4h or 1h30m, got a boolean")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            raise ValueError("a duration cannot exceed 366 days") from None
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if _NUMBER.fullmatch(text):
            seconds = float(text)
        else:
            match = _DURATION.fullmatch(text)
            if not text or not match or not any(match.groups()):
                raise ValueError("expected a duration such as 90s, 5m, 4h or 1h30m")
            seconds = sum(float(n) * mult for n, mult in zip(match.groups(), _UNITS.values(), strict=True) if n)
    else:
        raise ValueError(f"expected a duration such as 90s, 5m, 4h or 1h30m, got {type(value).__name__}")
    if seconds != seconds or seconds < 0:
        raise ValueError("a duration cannot be negative")
    if seconds > MAX_SECONDS:
        raise ValueError("a duration cannot exceed 366 days")
    return seconds


def format_duration(seconds: float | None) -> str:
    """Return a compact human form: ``42s``, ``3m05s``, ``1h02m``."""
    if seconds is None:
        return ""
    s = round(seconds)  # an int for an int or a float
    if s < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def format_tokens(n: float | None) -> str:
    """Return a token count as ``950``, ``12.3k`` or ``4.1M`` (empty for unknown)."""
    if n is None:
        return ""
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 1000:
        return f"{n / 1000:.1f}k"
    return str(int(n))

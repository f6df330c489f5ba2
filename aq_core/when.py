"""Points in time as job files write them (``not_before:``): ISO 8601 or epoch seconds."""

from __future__ import annotations

import re
from datetime import datetime

_EPOCH = re.compile(r"\d{1,12}(?:\.\d+)?")
#: Earliest and latest accepted instants (1970 .. 9999): a typo gives an error, not a job that never runs.
_LOW, _HIGH = 0.0, 253402300799.0


def parse_when(value: object) -> float:
    """Return ``value`` as epoch seconds; raise ``ValueError`` with a one-line reason.

    An ISO 8601 date or date-time with an offset (``2026-12-06T02:00:00+01:00``, ``...Z``) is that
    instant; without one it is host-local time; a number is epoch seconds.
    """
    if isinstance(value, bool):
        raise ValueError("expected an ISO 8601 date-time or epoch seconds, got a boolean")
    if isinstance(value, int):
        seconds = float(value) if _LOW <= value <= _HIGH else float("nan")  # float() of a huge int raises
    elif isinstance(value, float):
        seconds = value
    elif isinstance(value, str) and _EPOCH.fullmatch(value.strip()):
        seconds = float(value.strip())
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        if text.endswith(("z", "Z")):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                "expected an ISO 8601 date-time (2026-12-06T02:00, with or without an offset) or epoch seconds"
            ) from None
        # A naive value is host-local time: datetime.timestamp() reads it so.
        seconds = moment.timestamp()
    else:
        raise ValueError(f"expected an ISO 8601 date-time or epoch seconds, got {type(value).__name__}")
    if not _LOW <= seconds <= _HIGH:  # NaN too
        raise ValueError("out of range (expected a time between 1970 and 9999)")
    return seconds

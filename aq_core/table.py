"""A plain fixed-width table (tabulate's "simple" look), fast enough for tens of thousands of rows."""

from __future__ import annotations

from collections.abc import Sequence


def simple_table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> str:
    """Return ``rows`` under ``headers``: columns two spaces apart, a dashed rule under the headers."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            if len(cell) > widths[i]:
                widths[i] = len(cell)
    last = len(headers) - 1

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(widths[i]) if i < last else v for i, v in enumerate(values)).rstrip()

    out = [line(headers), "  ".join("-" * w for w in widths)]
    out.extend(line(row) for row in cells)
    return "\n".join(out)

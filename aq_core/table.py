"""A plain fixed-width table (tabulate's "simple" look), fast enough for a hundred thousand rows."""

from __future__ import annotations

from collections.abc import Sequence


def column_widths(cells: Sequence[Sequence[str]], headers: Sequence[str]) -> list[int]:
    """The width of each column: its longest cell or header."""
    widths = [len(h) for h in headers]
    if cells:
        widths = [max(w, *map(len, column)) for w, column in zip(widths, zip(*cells, strict=True), strict=True)]
    return widths


def row_format(widths: Sequence[int]):
    """A formatter of one line at ``widths`` (trailing spaces not yet stripped)."""
    # One format string for every line: str.format pads much faster than a join of ljust calls.
    pattern = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + ("  {}" if len(widths) > 1 else "{}")
    return pattern.format


def head_lines(headers: Sequence[str], widths: Sequence[int]) -> list[str]:
    """The header line and the dashed rule under it."""
    return [row_format(widths)(*headers).rstrip(), "  ".join("-" * w for w in widths)]


def table_lines(cells: Sequence[Sequence[str]], headers: Sequence[str]) -> list[str]:
    """Return the lines of ``cells`` (strings) under ``headers``: columns two spaces apart, a dashed
    rule under the headers, trailing spaces stripped."""
    widths = column_widths(cells, headers)
    form = row_format(widths)
    out = head_lines(headers, widths)
    out.extend(form(*row).rstrip() for row in cells)
    return out


def simple_table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> str:
    """Return ``rows`` under ``headers`` as one string (see ``table_lines``)."""
    return "\n".join(table_lines([[str(c) for c in row] for row in rows], headers))

"""How list commands print: a table with a header line, or JSON lines (``--json``) for scripts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import click

__all__ = ("echo_table",)


def echo_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Print ``rows`` under ``headers``, each column as wide as its widest cell, two spaces apart.

    The header is printed even when there are no rows, so an empty list still says what it lists.
    """
    lines = [list(headers), *(list(row) for row in rows)]
    widths = [max(len(line[column]) for line in lines) for column in range(len(headers))]
    for line in lines:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())

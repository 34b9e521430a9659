"""Tables that fit the terminal (80 columns, or a pipe) without cutting what a person looks for.

A column has a priority: 0 is never left out (what identifies a row, the value asked for); the others are kept in
priority order while they fit, and the headers of those left out are returned for a note. Nothing is cut to `20261…`.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.table import Table

from dlrun.core.text import safe_terminal_text as _safe


@dataclass(frozen=True)
class Column:
    header: str
    cells: list[str]


def column_width(column: Column) -> int:
    """Characters a column takes in a rich table with its cells whole: the longest cell, one space each side, a border."""
    return max(map(len, [column.header, *column.cells])) + 3


def fitted_table(columns: list[tuple[int, Column]], width: int, title: str) -> tuple[Table, list[str]]:
    """The table for a terminal `width` characters wide (columns in the given order), and the headers left out."""
    kept = {id(column) for priority, column in columns if priority == 0}
    used = 1 + sum(column_width(column) for priority, column in columns if priority == 0)  # 1: the left border
    # by priority, stopping at the first that does not fit: a narrow column never displaces a more useful one
    for _, column in sorted((item for item in columns if item[0] > 0), key=lambda item: item[0]):
        if used + column_width(column) > width:
            break
        kept.add(id(column))
        used += column_width(column)
    shown = [column for _, column in columns if id(column) in kept]
    table = Table(title=title)
    for column in shown:
        table.add_column(_safe(column.header), no_wrap=True)
    for cells in zip(*(column.cells for column in shown)):
        table.add_row(*map(_safe, cells))
    return table, [column.header for _, column in columns if id(column) not in kept]

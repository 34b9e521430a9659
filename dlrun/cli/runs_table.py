"""`dlrun runs` as a table that fits the terminal (80 columns, or a pipe) without cutting what a person looks for: every
run id and the value `--sort` ranks by are shown whole. Columns of lower value are left out, named in a note, instead of
squeezing every cell into `20261…`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from dlrun.core.text import safe_terminal_text as _safe
from dlrun.metrics.names import format_value as _fmt
from dlrun.run.listing import FACT_KEYS, RunRow, format_duration, sort_key_value


@dataclass(frozen=True)
class Column:
    header: str
    cells: list[str]


def runs_columns(rows: list[RunRow], sort: str | None) -> list[tuple[int, Column]]:
    """(priority, column) in display order; priority 0 is never left out (the id and the sorted value)."""
    best = [f"{row.monitor} {_fmt(row.best_val)}" if row.monitor else "-" for row in rows]
    test = [f"{row.test_metric} {_fmt(row.test_value)}" if row.test_value is not None else "-" for row in rows]
    columns = [
        (0, Column("id", [row.id for row in rows])),
        (1, Column("status", [row.status for row in rows])),
        (2, Column("best val", best)),
        (3, Column("test", test)),
        (0 if sort == "epochs" else 5, Column("epochs", [str(row.epochs or "-") for row in rows])),
        (0 if sort == "duration_s" else 6, Column("duration", [format_duration(row.duration_s) for row in rows])),
        (4, Column("target", [row.target or "-" for row in rows])),
        (7, Column("data", [Path(row.data).name if row.data else "-" for row in rows])),
        (8, Column("name", [row.name for row in rows])),  # the id ends in the name already
    ]
    if sort and sort not in FACT_KEYS:
        columns.insert(1, (0, Column(sort, [_fmt(sort_key_value(row, sort)) for row in rows])))
    return columns


def column_width(column: Column) -> int:
    """Characters a column takes in a rich table with its cells whole: the longest cell, one space each side, a border."""
    return max(map(len, [column.header, *column.cells])) + 3


def runs_table(rows: list[RunRow], sort: str | None, width: int, title: str) -> tuple[Table, list[str]]:
    """The table for a terminal `width` characters wide, and the headers of the columns left out to fit it."""
    columns = runs_columns(rows, sort)
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

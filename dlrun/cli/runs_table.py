"""`dlrun runs` as a table that fits the terminal (80 columns, or a pipe) without cutting what a person looks for: every
run id and the value `--sort` ranks by are shown whole. Columns of lower value are left out, named in a note, instead of
squeezing every cell into `20261…`."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from dlrun.cli.fitted import Column, fitted_table
from dlrun.metrics.names import format_value as _fmt
from dlrun.run.listing import FACT_KEYS, RunRow, format_duration, sort_key_value


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


def runs_table(rows: list[RunRow], sort: str | None, width: int, title: str) -> tuple[Table, list[str]]:
    """The table for a terminal `width` characters wide, and the headers of the columns left out to fit it."""
    return fitted_table(runs_columns(rows, sort), width, title)

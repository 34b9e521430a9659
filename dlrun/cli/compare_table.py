"""`dlrun compare` as tables that fit the terminal (80 columns, or a pipe) with every run id whole.

Run ids are the column headers when they fit; otherwise the columns are `run 1`, `run 2`... and the ids are listed
above the tables, one a line. Runs that do not fit side by side are spread over several tables, the row names (config
keys, metric names) repeated in each; long config values wrap inside their cell.
"""

from __future__ import annotations

import json

from rich.table import Table

from dlrun.cli.fitted import Column, column_width
from dlrun.core.text import safe_terminal_text as _safe
from dlrun.metrics.names import format_value as _fmt
from dlrun.run.listing import Comparison, format_duration

# A config value column is never made narrower than this to fit more runs beside it; its cells wrap instead.
MIN_VALUE_WIDTH = 12


def compare_sections(comparison: Comparison) -> list[tuple[str, Column, list[Column]]]:
    """(title, row-name column, one value column per run) for the config differences and the metrics."""
    runs = comparison.runs
    config = comparison.config or [("(identical configs)", [None] * len(runs))]
    keys = Column("config key", [key for key, _ in config])
    values = [Column(row.id, ["" if not comparison.config else json.dumps(v[n]) for _, v in config])
              for n, row in enumerate(runs)]
    facts = [("status", [row.status for row in runs]), ("epochs", [str(row.epochs or "-") for row in runs]),
             ("duration", [format_duration(row.duration_s) for row in runs]),
             *((key, [_fmt(v) for v in values]) for key, values in comparison.metrics)]
    names = Column("metric", [name for name, _ in facts])
    scores = [Column(row.id, [cells[n] for _, cells in facts]) for n, row in enumerate(runs)]
    return [("config differences", keys, values), ("metrics", names, scores)]


def compare_tables(comparison: Comparison, width: int) -> tuple[list[str], list[Table]]:
    """Lines naming the runs (empty when the ids fit as headers), and the tables for a terminal `width` wide."""
    sections = compare_sections(comparison)
    ids = [row.id for row in comparison.runs]
    by_id = all(1 + column_width(names) + sum(map(column_width, values)) <= width for _, names, values in sections)
    headers = ids if by_id else [f"run {n}" for n in range(1, len(ids) + 1)]
    legend = [] if by_id else [f"{header}: {run_id}" for header, run_id in zip(headers, ids)]
    tables = []
    for title, names, values in sections:
        groups = _groups([_value_width(Column(header, column.cells)) for header, column in zip(headers, values)],
                         width - 1 - column_width(names))
        for group in groups:
            part = f" ({headers[group[0]]}-{headers[group[-1]].removeprefix('run ')})" if len(groups) > 1 else ""
            table = Table(title=f"{title}{part}")
            table.add_column(_safe(names.header), no_wrap=True)
            for n in group:
                table.add_column(_safe(headers[n]), overflow="fold")
            for row, name in enumerate(names.cells):
                table.add_row(_safe(name), *(_safe(values[n].cells[row]) for n in group))
            tables.append(table)
    return legend, tables


def _value_width(column: Column) -> int:
    return min(column_width(column), max(MIN_VALUE_WIDTH, len(column.header) + 3))


def _groups(widths: list[int], room: int) -> list[list[int]]:
    """Consecutive runs, as many per table as fit in `room` characters (at least one)."""
    groups: list[list[int]] = [[]]
    used = 0
    for n, width in enumerate(widths):
        if groups[-1] and used + width > room:
            groups.append([])
            used = 0
        groups[-1].append(n)
        used += width
    return groups

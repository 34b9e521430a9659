"""A sweep's trials as a table that fits the terminal (80 columns, or a pipe): every searched key named by the last
part of its path (`lr`, `momentum`; more of the path only where two keys share it), the trial number and the objective
never cut, lower-value columns left out with a note, and the rows beyond MAX_ROWS counted, never dropped silently."""

from __future__ import annotations

import pandas as pd
from rich.table import Table

from dlrun.cli.fitted import Column, fitted_table
from dlrun.metrics.names import format_value as _fmt

MAX_ROWS = 20
PARAM = "param:"


def short_names(keys: list[str]) -> dict[str, str]:
    """Each dotted key by its last part; keys that share it by as many trailing parts as tell them apart
    (`optimizer.lr` and `scheduler.lr` stay whole, `optimizer.momentum` is `momentum`)."""
    names = {}
    for key in keys:
        parts = key.split(".")
        n = 1
        while n < len(parts) and any(other != key and other.split(".")[-n:] == parts[-n:] for other in keys):
            n += 1
        names[key] = ".".join(parts[-n:])
    return names


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "-"
    if isinstance(value, float):
        # an integer key (batch_size) reads back as a float in a column that also holds missing values
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else _fmt(value)
    return str(value)


def trials_table(trials: pd.DataFrame, width: int) -> tuple[Table, list[str], int]:
    """The best MAX_ROWS trials for a terminal `width` wide; the headers left out, and how many trials are not shown."""
    shown = trials.head(MAX_ROWS)
    params = [column for column in trials.columns if column.startswith(PARAM)]
    names = short_names([column.removeprefix(PARAM) for column in params])
    objective = [_fmt(v) if isinstance(v, float) and not pd.isna(v) else "-" for v in shown["objective"]]
    columns = [
        (0, Column("trial", [str(int(v)) for v in shown["trial"]])),
        (1, Column("state", list(shown["state"]))),
        (0, Column("objective", objective)),
        *((2 + n, Column(names[column.removeprefix(PARAM)], [_cell(v) for v in shown[column]])) for n, column in enumerate(params)),
        (90, Column("epochs", [_cell(v) for v in shown["epochs"]])),
        (91, Column("seconds", [f"{v:.1f}" if isinstance(v, float) and not pd.isna(v) else "-" for v in shown["seconds"]])),
    ]
    table, left_out = fitted_table(columns, width, "trials (best first)")
    return table, left_out, len(trials) - len(shown)

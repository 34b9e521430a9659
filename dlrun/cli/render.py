"""What the commands print: tables and lines on stderr. Every piece of user text (column, class, unit, path, error)
goes through core.text.safe_terminal_text: never rich markup, never a raw terminal escape sequence."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from dlrun.core.text import safe_terminal_text as _safe
from dlrun.metrics.names import format_value as _fmt, metric_label

stderr = Console(stderr=True)


def warn_if_unfinished(run: Path, status: str | None, epoch: int | None) -> None:
    """An interrupted or failed run still has a valid best.pt, but its scores are not those of the finished run."""
    if status not in (None, "completed"):
        stderr.print(_safe(f"warning: {run} did not complete (status: {status}); scoring its best checkpoint so far "
                           f"(epoch {epoch})"), highlight=False, soft_wrap=True)


def summary_table(summary: dict, units: dict[str, str]) -> Table:
    """The data as `train` sees it: rows per split, features before and after encoding, each target's balance or range.
    Column and class names are escaped: a name like [x] is data, not rich markup."""
    from dlrun.run.report import summary_rows

    table = Table("data", "value", title="data summary")
    for name, value in summary_rows(summary, units):
        table.add_row(_safe(name), _safe(value))
    return table


def column_table(rows: list[dict]) -> Table:
    """The column table: one row per column, the role dlrun gave it and why."""
    from dlrun.data.columns import TABLE_HEADER, table_cells

    table = Table(*TABLE_HEADER, title="columns")
    for cells in table_cells(rows):
        table.add_row(*(_safe(cell) for cell in cells))
    return table


def print_warning(line: str) -> None:
    stderr.print(f"[bold yellow]warning:[/] {_safe(line)}", highlight=False, soft_wrap=True)


def print_row_check(check, source: str) -> None:
    """What reading new rows found, per column (predict, eval --data); nothing when the rows were all familiar."""
    if check is None or check.clean:
        return
    stderr.print(_safe(f"{source}: {check.n_rows} rows; values the model was not trained on (--strict makes these an error):"),
                 highlight=False, soft_wrap=True)
    for line in check.lines():
        stderr.print(f"  - {_safe(line)}", highlight=False, soft_wrap=True)


def metrics_tables(metrics: dict[str, dict[str, dict[str, float]]], units: dict[str, str]) -> list[Table]:
    """One table per target: a row per metric, a column per split; errors in the target's units."""
    tables = []
    targets = list(dict.fromkeys(t for per_target in metrics.values() for t in per_target))
    for target in targets:
        table = Table("metric", *map(_safe, metrics), title=f"target: {_safe(target)}")
        names = list(dict.fromkeys(m for per_target in metrics.values() for m in per_target.get(target, {})))
        for name in names:
            table.add_row(_safe(metric_label(name, target, units)), *(_fmt(metrics[split].get(target, {}).get(name)) for split in metrics))
        tables.append(table)
    return tables


def print_trial(result) -> None:
    """One line per finished trial (called in every worker process)."""
    params = params_text(result.params)
    value = "" if result.value is None else f" -> {_fmt(result.value)}"
    note = f" ({result.note})" if result.note else ""
    stderr.print(_safe(f"trial {result.number} {result.state}{value} in {result.seconds:.1f}s: {params}{note}"),
                 highlight=False, soft_wrap=True)


def params_text(params: dict) -> str:
    """A trial's sampled values as `key=value, ...` (keys by their last part, as in the trials table), floats as in
    the tables."""
    from dlrun.cli.sweep_table import short_names

    names = short_names(list(params))
    return ", ".join(f"{names[key]}={_fmt(value) if isinstance(value, float) else value}" for key, value in params.items())


def print_sweep(summary) -> None:
    states = ", ".join(f"{n} {state}" for state, n in summary.states.items() if n)
    stderr.print(_safe(f"study {summary.study}: {states or 'no trials'} of {summary.budget}; objective "
                       f"{summary.objective} ({summary.direction})"), highlight=False, soft_wrap=True)
    if not summary.trials.empty:
        from dlrun.cli.sweep_table import trials_table

        table, left_out, n_more = trials_table(summary.trials, stderr.width)
        stderr.print(table)
        if n_more:
            stderr.print(f"{n_more} more trials in trials.csv", highlight=False)
        if left_out:
            stderr.print(_safe(f"left out to fit {stderr.width} columns: {', '.join(left_out)} (trials.csv has every "
                               "column)"), highlight=False, soft_wrap=True)
    best = summary.best
    if best is not None:
        stderr.print(_safe(f"best trial {best['trial']}: {summary.objective} {_fmt(best['value'])}; {params_text(best['params'])}"),
                     highlight=False, soft_wrap=True)
        scores = {"val": best["val"] or {}, **({"test (once)": best["test"]} if best["test"] else {})}
        for table in metrics_tables(scores, best["units"]):
            stderr.print(table)
    for note in summary.notes:
        stderr.print(_safe(f"note: {note}"), highlight=False, soft_wrap=True)
    if not summary.complete:
        stderr.print("the study is not complete: run the same command again to continue it", highlight=False)
    for path in summary.files:
        stderr.print(_safe(str(path)), highlight=False)

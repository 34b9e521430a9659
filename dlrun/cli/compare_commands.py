"""`dlrun compare`: config differences and metrics of several runs side by side, and (--plot) their learning curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.console import Console

from dlrun.cli.app import app
from dlrun.cli.conventions import DlrunCommand
from dlrun.cli.exits import guarded
from dlrun.core.text import safe_terminal_text as escape

DEFAULT_PLOT = "compare.png"


def with_plot_path(args: list[str]) -> list[str]:
    """`--plot` given last or before another option means the default path: the parser needs a value after it."""
    args = list(args)
    for at, arg in enumerate(args):
        if arg == "--plot" and (at + 1 == len(args) or args[at + 1].startswith("-")):
            args.insert(at + 1, DEFAULT_PLOT)
            break
    return args


class PlotPathOptional(DlrunCommand):
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, with_plot_path(args))


@app.command(cls=PlotPathOptional)
def compare(
    run_dirs: List[Path] = typer.Argument(..., help="Two or more run directories."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    plot: Optional[Path] = typer.Option(None, "--plot", metavar="[PATH]",
                                        help=f"Also draw the runs' learning curves (loss and the monitored metric) "
                                             f"into one PNG (default {DEFAULT_PLOT}); prints its path."),
) -> None:
    """Config keys that differ between runs, and every metric side by side."""
    import json

    from dlrun.run.listing import compare_runs

    if plot is not None:
        from dlrun.run.curves import check_plot_path

        guarded(lambda: check_plot_path(plot))  # before any table: a misplaced --plot is said at once
    result = guarded(lambda: compare_runs(run_dirs))
    if as_json:
        typer.echo(json.dumps({"runs": [row.id for row in result.runs], "config": dict(result.config),
                               "metrics": dict(result.metrics)}, indent=2))
    else:
        from dlrun.cli.compare_table import compare_tables

        console = Console()
        legend, tables = compare_tables(result, console.width)
        for line in legend:
            console.print(escape(line), highlight=False, soft_wrap=True)
        for table in tables:
            console.print(table)
    if plot is not None:
        from dlrun.run.curves import plot_comparison

        typer.echo(str(guarded(lambda: plot_comparison(run_dirs, plot))))

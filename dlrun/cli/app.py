"""The `dlrun` application object: each command module registers its commands on `app` (see cli/__init__.py)."""

from __future__ import annotations

import typer

from dlrun import __version__
from dlrun.cli.conventions import DlrunTyper

app = DlrunTyper(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Deep-learning experiments on tables: YAML config in, run directory out.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dlrun {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Deep-learning experiments on tables: YAML config in, run directory out."""


def main() -> None:
    app(prog_name="dlrun")

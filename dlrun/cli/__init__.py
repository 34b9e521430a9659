"""The command line: a thin shell over the library (commands.py holds the commands, render.py the tables)."""

from dlrun.cli.commands import app, main

__all__ = ["app", "main"]

"""The command line: a thin shell over the library.

app.py holds the application object; each command module registers its commands on it when imported here, so any
import of dlrun.cli sees every command. render.py draws the tables; exits.py maps errors to exit codes.
"""

from dlrun.cli import commands  # registers train, eval, predict, check, config, report, runs, ...
from dlrun.cli import compare_commands  # registers compare
from dlrun.cli import cv_commands  # registers cv
from dlrun.cli import serve_commands  # registers export, serve
from dlrun.cli.app import app, main

__all__ = ["app", "commands", "compare_commands", "cv_commands", "main", "serve_commands"]

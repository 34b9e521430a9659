"""The one place that turns exceptions into exit codes, for every command."""

from __future__ import annotations

from typing import Callable, TypeVar

import typer
from rich.markup import escape

from dlrun.cli.render import stderr

Result = TypeVar("Result")


def guarded(call: Callable[[], Result]) -> Result:
    """Run a library call; a user's mistake becomes one line on stderr and exit 2, Ctrl-C exit 130."""
    from dlrun.core.errors import DlrunError

    try:
        return call()
    except DlrunError as exc:
        stderr.print(f"[bold red]Error:[/] {escape(str(exc))}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        stderr.print("Interrupted.")
        raise typer.Exit(130) from None

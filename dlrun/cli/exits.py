"""The one place that turns exceptions into exit codes, for every command.

Exit status 2: every `Error: ...` line (a mistake in the input, or a machine that cannot hold the output: a full or
read-only disk, a folder without permission). 130: Ctrl-C. A traceback reaching a user is a bug.
"""

from __future__ import annotations

import errno
from typing import Callable, TypeVar

import typer

from dlrun.cli.render import stderr
from dlrun.core.text import safe_terminal_text

Result = TypeVar("Result")
USER_ERROR = 2
INTERRUPTED = 130


def guarded(call: Callable[[], Result]) -> Result:
    """Run a library call; a user's mistake or a failing disk becomes one line on stderr and exit 2, Ctrl-C exit 130."""
    from dlrun.core.errors import DlrunError

    try:
        return call()
    except DlrunError as exc:
        fail(str(exc))
    except OSError as exc:  # library code names the file (core/io.py); the disk, not dlrun, has to change
        fail(os_error_message(exc))
    except RecursionError:  # a crafted file nested too deeply for a reader that does not check depth itself
        fail("an input file is nested too deeply to read (thousands of levels of [ or {); it is not a dlrun file")
    except KeyboardInterrupt as exc:
        _interrupted(exc)


def _interrupted(exc: KeyboardInterrupt) -> None:
    """Exit 130; a run stopped on Ctrl-C or SIGTERM says where it is and how to continue it (run directory on stdout)."""
    from dlrun.run.interrupts import RunInterrupted, resume_command

    if not isinstance(exc, RunInterrupted):
        stderr.print("Interrupted.")
        raise typer.Exit(INTERRUPTED) from None
    saved = f" after epoch {exc.epoch}; checkpoints/last.pt saved" if exc.epoch is not None else ""
    stderr.print(safe_terminal_text(f"Interrupted ({exc.signal_name}){saved}. Run directory: {exc.run_dir}"),
                 highlight=False, soft_wrap=True)
    stderr.print(safe_terminal_text(f"Resume with: {resume_command(exc.run_dir)}"), highlight=False, soft_wrap=True)
    typer.echo(str(exc.run_dir))
    raise typer.Exit(INTERRUPTED) from None


def fail(message: str) -> None:
    """Print `Error: message` (user text escaped: no markup, no terminal escape codes) and exit 2."""
    stderr.print(f"[bold red]Error:[/] {safe_terminal_text(message)}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(USER_ERROR) from None


def os_error_message(exc: OSError) -> str:
    """`no space left on device writing runs/x/metrics.csv`, and the like for other file-system failures."""
    where = f" {exc.filename}" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on device writing{where}; free some space and run the command again"
    if exc.errno == errno.EROFS:
        return f"read-only file system: cannot write{where}"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied:{where}; the folder or file is not writable (or readable) by you"
    if exc.errno == errno.ELOOP:
        return f"too many levels of symbolic links:{where}"
    return f"{(exc.strerror or type(exc).__name__).lower()}:{where}"

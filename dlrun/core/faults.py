"""A test-only fault hook: kill this process at an exact file write, so crash tests need no timing.

    DLRUN_TEST_KILL_AT=last.pt:before:3   SIGKILL just before the 3rd replacement of a file named last.pt
    DLRUN_TEST_KILL_AT=run.json:after:1   SIGKILL just after the 1st replacement of run.json
    DLRUN_TEST_KILL_AT=metrics.csv:after:2:SIGTERM   SIGTERM (or SIGINT) instead: what Ctrl-C or `kill` sends

io.write_atomic calls `reached` on each side of its rename. The variable is read once, on the first write; when it is
unset (always, outside the tests) every later call returns at the first comparison. Nothing else in dlrun uses this.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

ENV = "DLRUN_TEST_KILL_AT"
MOMENTS = ("before", "after")

_target: tuple[str, str, int, signal.Signals] | None = None  # (file name, moment, n, signal), read from ENV once
_unset = False  # True once ENV was read and found empty: the fast way out
_replacements: dict[str, int] = {}  # file name -> replacements started in this process


def reached(path: Path, moment: str) -> None:
    """Called `before` and `after` os.replace puts a new version of `path` in place; kills the process when this is
    the write DLRUN_TEST_KILL_AT names."""
    global _target, _unset
    if _unset:
        return
    if _target is None:
        _target = _parse(os.environ.get(ENV, ""))
        _unset = _target is None
        if _unset:
            return
    name, kill_moment, n, sig = _target
    if path.name != name:
        return
    if moment == "before":
        _replacements[name] = _replacements.get(name, 0) + 1
    if moment == kill_moment and _replacements[name] == n:
        # SIGKILL, as the OOM killer or a power cut ends a run: no finally, no atexit, no buffered output flushed.
        # SIGINT or SIGTERM, as a user stops a run: Python runs its handler as soon as this call returns.
        os.kill(os.getpid(), sig)


SIGNALS = {"SIGKILL": signal.SIGKILL, "SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT}


def _parse(value: str) -> tuple[str, str, int, signal.Signals] | None:
    if not value:
        return None
    name, _, rest = value.partition(":")
    moment, _, rest = rest.partition(":")
    n, _, sig = rest.partition(":")
    count = int(n) if n.isdigit() else 0
    if not name or moment not in MOMENTS or count < 1 or (sig or "SIGKILL") not in SIGNALS:
        # A typo would make a crash test pass without any crash; refuse it loudly instead.
        raise ValueError(f"{ENV}={value!r}: expected FILE_NAME:before|after:N[:SIGKILL|SIGTERM|SIGINT] with N >= 1")
    return name, moment, count, SIGNALS[sig or "SIGKILL"]

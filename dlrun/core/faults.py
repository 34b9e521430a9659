"""A test-only fault hook: kill this process at an exact file write, so crash tests need no timing.

    DLRUN_TEST_KILL_AT=last.pt:before:3   SIGKILL just before the 3rd replacement of a file named last.pt
    DLRUN_TEST_KILL_AT=run.json:after:1   SIGKILL just after the 1st replacement of run.json

io.write_atomic calls `reached` on each side of its rename. The variable is read once, on the first write; when it is
unset (always, outside the tests) every later call returns at the first comparison. Nothing else in dlrun uses this.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

ENV = "DLRUN_TEST_KILL_AT"
MOMENTS = ("before", "after")

_target: tuple[str, str, int] | None = None  # (file name, moment, n), read from ENV on the first call
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
    name, kill_moment, n = _target
    if path.name != name:
        return
    if moment == "before":
        _replacements[name] = _replacements.get(name, 0) + 1
    if moment == kill_moment and _replacements[name] == n:
        # SIGKILL, as the OOM killer or a power cut ends a run: no finally, no atexit, no buffered output flushed.
        os.kill(os.getpid(), signal.SIGKILL)


def _parse(value: str) -> tuple[str, str, int] | None:
    if not value:
        return None
    name, _, rest = value.partition(":")
    moment, _, n = rest.partition(":")
    count = int(n) if n.isdigit() else 0
    if not name or moment not in MOMENTS or count < 1:
        # A typo would make a crash test pass without any crash; refuse it loudly instead.
        raise ValueError(f"{ENV}={value!r}: expected FILE_NAME:before|after:N with N >= 1")
    return name, moment, count

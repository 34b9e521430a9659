"""Helpers for the sweep tests that must cross into worker processes (spawn imports them by module name)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from dlrun.training.state import Callback


class KillOnce(Callback):
    """SIGKILL this process at the end of `epoch` of a trial, the first time any worker gets there.

    The marker file is created atomically, so of several workers exactly one dies: the way a machine or an OOM killer
    ends a worker, with no chance to record anything."""

    def __init__(self, marker: Path, epoch: int = 2):
        self.marker, self.epoch = str(marker), epoch

    def on_epoch_end(self, state, row) -> None:
        if state.epoch != self.epoch:
            return
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        os.kill(os.getpid(), signal.SIGKILL)

"""The callback that turns SIGINT and SIGTERM into a clean stop after the current epoch (see run/interrupts.py)."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from dlrun.run.interrupts import RunInterrupted
from dlrun.training.state import Callback, TrainState

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopOnSignal(Callback):
    """Ends training at the first epoch end after SIGINT or SIGTERM arrived. It must run after Checkpoints, so
    last.pt holds the finished epoch; it raises instead of setting `state.stop`, which last.pt would keep and a
    resumed run would obey."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.received: str | None = None  # the signal's name, once one arrived

    def on_epoch_end(self, state: TrainState, row: dict[str, float]) -> None:
        if self.received is not None:
            raise RunInterrupted(self.run_dir, state.epoch, self.received)

    @contextmanager
    def listening(self) -> Iterator["StopOnSignal"]:
        """Catch SIGINT and SIGTERM for the `with` block (main thread only: Python delivers signals there); the
        first of them is noted and the previous handlers come back, so a second one acts as it always did."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {sig: signal.getsignal(sig) for sig in SIGNALS}

        def note(signum, frame) -> None:
            self.received = signal.Signals(signum).name
            _restore(previous)

        for sig in SIGNALS:
            signal.signal(sig, note)
        try:
            yield self
        finally:
            _restore(previous)


def _restore(handlers: dict) -> None:
    for sig, handler in handlers.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

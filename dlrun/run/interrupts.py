"""Ctrl-C and SIGTERM stop a run cleanly: after the epoch in progress, with last.pt saved, so `--resume` continues it.

Why after the epoch and not the batch: last.pt is the state at an epoch's end (shuffle order, schedule, history);
a run stopped mid-epoch could only resume by repeating that epoch's first batches, and would not end where a
straight run ends. A second Ctrl-C stops at once (the run is then resumed from the epoch before).
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from dlrun.training.state import Callback, TrainState

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunInterrupted(KeyboardInterrupt):
    """The run stopped on a signal after `epoch` with its checkpoints saved. A KeyboardInterrupt, so every caller
    that already treats Ctrl-C as "stop now" (a sweep, the CLI) treats this the same way."""

    def __init__(self, run_dir: Path, epoch: int | None, signal_name: str):
        # epoch None: a second signal stopped it at once, or one came after training, while results were written
        super().__init__(f"{signal_name} after epoch {epoch}" if epoch is not None else f"{signal_name} during training")
        self.run_dir, self.epoch, self.signal_name = Path(run_dir), epoch, signal_name


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


def resume_command(run_dir: Path) -> str:
    """The exact command that continues `run_dir`, quoted for a POSIX shell."""
    import shlex

    return f"dlrun train --resume {shlex.quote(str(run_dir))}"

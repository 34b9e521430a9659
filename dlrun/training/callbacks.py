"""The callbacks: early stopping, files, progress."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dlrun.training.checkpoint import save_checkpoint
from dlrun.training.state import Callback, TrainState
from dlrun.core.io import flush_to_disk, write_csv


class EarlyStopping(Callback):
    """Stop once the monitored metric has not improved for `patience` epochs."""

    def __init__(self, patience: int):
        self.patience = patience

    def on_epoch_end(self, state: TrainState, row: dict[str, float]) -> None:
        if state.epoch - state.best_epoch >= self.patience:
            state.stop = True
            state.stop_reason = (
                f"early stopping: {state.monitor} has not improved for {self.patience} epochs (best epoch {state.best_epoch})"
            )


class MetricsLog(Callback):
    """Rewrite metrics.csv (one row per epoch) after every epoch, so an interrupted run keeps its history."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_epoch_end(self, state: TrainState, row: dict[str, float]) -> None:
        write_csv(self.path, pd.DataFrame(state.history), durable=False)


class Checkpoints(Callback):
    """`last` every epoch (with optimizer state, for resuming) and `best` when the monitor improves.

    Runs after every callback that sets `stop` or keeps state, so last.pt holds the epoch's whole outcome."""

    def __init__(self, last: Path, best: Path):
        self.last, self.best = Path(last), Path(best)

    def on_epoch_end(self, state: TrainState, row: dict[str, float]) -> None:
        # last.pt first: it carries the best weights too, so a kill before best.pt is written loses nothing
        save_checkpoint(self.last, state, include_optimizer=True, durable=False)
        if state.improved:
            save_checkpoint(self.best, state, include_optimizer=False, durable=False)

    def on_train_end(self, state: TrainState) -> None:
        # The checkpoints a finished run is served from must survive a power cut, not only a crash.
        for path in (self.last, self.best):
            flush_to_disk(path)


class RichProgress(Callback):
    """A live progress bar on stderr with the latest losses and the monitored metric.

    Use it as a context manager so the bar is closed even when training fails.
    """

    def __init__(self, total_epochs: int):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[status]}", markup=False), console=Console(stderr=True), transient=False,
        )
        self.task = self.progress.add_task("train", total=total_epochs, status="")

    def __enter__(self) -> "RichProgress":
        return self

    def __exit__(self, *exc_info) -> None:
        if self.progress.live.is_started:  # stopping a bar never started prints an empty line before the error
            self.progress.stop()

    def on_train_begin(self, state: TrainState) -> None:
        self.progress.start()  # only now: a run that fails its checks shows no empty bar

    def on_epoch_end(self, state: TrainState, row: dict[str, float]) -> None:
        status = f"train_loss {row['train_loss']:.4f}  val_loss {row['val_loss']:.4f}"
        if state.monitor not in ("val_loss", "train_loss"):
            status += f"  {state.monitor} {row[state.monitor]:.4f}"
        self.progress.update(self.task, completed=state.epoch, status=status)

    def on_train_end(self, state: TrainState) -> None:
        self.progress.update(self.task, total=state.epoch)

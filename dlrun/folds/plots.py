"""The cv directory's picture: each fold's training and validation loss per epoch, side by side, best epochs marked.

matplotlib is imported here only, and this module only when the cv summary is drawn."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from dlrun.run import layout
from dlrun.run.plots import new_figure, save_figure


def learning_curves(cv_dir: Path, fold_runs: Sequence[tuple[str, Path, int | None]]) -> Path:
    """plots/learning_curves.png of the directory from (label, run directory, best epoch) per fold; returns its path."""
    path = Path(cv_dir) / layout.LEARNING_CURVES_PLOT
    save_figure(learning_curves_figure([(label, pd.read_csv(run_dir / layout.HISTORY), best_epoch)
                                        for label, run_dir, best_epoch in fold_runs]), path)
    return path


def learning_curves_figure(curves: Sequence[tuple[str, pd.DataFrame, int | None]]) -> Figure:
    """Left: training loss per fold; right: validation loss per fold (one colour per fold, a dot at its best epoch)."""
    fig = new_figure(11, 4.2)
    train_ax, val_ax = fig.subplots(1, 2, sharey=True)
    for k, (label, history, best_epoch) in enumerate(curves):
        colour = f"C{k % 10}"
        train_ax.plot(history["epoch"], history["train_loss"], color=colour, linewidth=1.2, label=label)
        val_ax.plot(history["epoch"], history["val_loss"], color=colour, linewidth=1.2, label=label)
        best = history.loc[history["epoch"] == best_epoch, "val_loss"]
        if len(best):
            val_ax.plot([best_epoch], [best.iloc[0]], "o", color=colour, markersize=5)
    for ax, title in ((train_ax, "training loss per fold"), (val_ax, "validation loss per fold (dot: best epoch)")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    train_ax.set_ylabel("loss")
    val_ax.legend(fontsize="small", ncol=max(1, len(curves) // 8), loc="upper right")
    return fig


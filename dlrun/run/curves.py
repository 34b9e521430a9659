"""Learning curves of several runs in one picture (`dlrun compare RUN... --plot`): the loss and the monitored metric
per epoch, a colour per run, from each run's metrics.csv. The curriculum's "compare activations / optimizers" view."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from dlrun.core.errors import ConfigError, RunError
from dlrun.run import layout
from dlrun.run.plots import new_figure, save_figure
from dlrun.run.record import read_record


@dataclass(frozen=True)
class Curve:
    panel: str  # "loss" or the monitored metric's column, e.g. "val_accuracy"
    label: str  # "<run id> train" / "<run id> val" / "<run id>"
    run: str  # the run id: one colour per run
    epochs: list[int]
    values: list[float]


def learning_curves(run_dirs: list[Path | str]) -> list[Curve]:
    """What compare_figure draws: per run, its train and validation loss, and the metric the first run monitors (its
    early-stopping metric; when that is val_loss, the first other validation metric), for every run that records it."""
    histories = {}
    for run_dir in map(Path, run_dirs):
        path = run_dir / layout.HISTORY
        if not path.is_file():
            raise RunError(f"{run_dir} has no {layout.HISTORY}: it has not finished an epoch")
        try:
            histories[run_dir.name] = pd.read_csv(path)
        except (OSError, ValueError) as exc:
            raise RunError(f"{path} is damaged ({exc})") from None
    monitor = read_record(Path(run_dirs[0])).monitor or "val_loss"
    if monitor in ("val_loss", "train_loss"):
        first = next(iter(histories.values()))
        monitor = next((c for c in first.columns if c.startswith("val_") and c != "val_loss" and not c.endswith("_loss")),
                       monitor)
    curves = []
    for run, history in histories.items():
        epochs = history["epoch"].astype(int).tolist()
        for split in ("train", "val"):
            if f"{split}_loss" in history:
                curves.append(Curve("loss", f"{run} {split}", run, epochs, history[f"{split}_loss"].astype(float).tolist()))
        if monitor in history and monitor not in ("train_loss", "val_loss"):
            curves.append(Curve(monitor, run, run, epochs, history[monitor].astype(float).tolist()))
    return curves


def compare_figure(curves: list[Curve]) -> Figure:
    """One panel per quantity; a colour per run; the train loss dashed, validation solid."""
    panels = list(dict.fromkeys(curve.panel for curve in curves))
    runs = list(dict.fromkeys(curve.run for curve in curves))
    colours = {run: f"C{n % 10}" for n, run in enumerate(runs)}
    fig = new_figure(5.2 * len(panels), 4.6)
    axes = fig.subplots(1, len(panels), squeeze=False).ravel()
    for ax, panel in zip(axes, panels):
        for curve in (c for c in curves if c.panel == panel):
            ax.plot(curve.epochs, curve.values, color=colours[curve.run], label=curve.label,
                    linestyle="--" if curve.label.endswith(" train") else "-", marker="." if len(curve.epochs) < 30 else None)
        ax.set_title("loss (dashed: train, solid: validation)" if panel == "loss" else panel, fontsize="medium")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=colours[run]) for run in runs]  # the legend: one entry per run, not per line
    fig.legend(handles, runs, loc="outside lower center", ncol=1 if max(map(len, runs)) > 40 else 2, fontsize="small")
    fig.suptitle(f"Learning curves of {len(runs)} runs")
    return fig


def check_plot_path(path: Path | str) -> Path:
    """`--plot PATH` must name a PNG: `compare --plot RUN_A RUN_B` would otherwise take RUN_A for the picture."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ConfigError(f"--plot: {str(path)!r} must be a .png file (put --plot after the run directories, or give "
                          "it a path such as compare.png)")
    return path


def plot_comparison(run_dirs: list[Path | str], path: Path | str) -> Path:
    """Draw the learning curves of `run_dirs` into the PNG `path`; returns it."""
    path = check_plot_path(path)
    save_figure(compare_figure(learning_curves(run_dirs)), path)
    return path

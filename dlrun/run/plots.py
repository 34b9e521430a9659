"""Pictures of a run, drawn from the files it left behind: loss and metric curves, confusion matrices, ROC curves,
predicted-vs-true and residuals, training diagnostics. One PNG per picture in the run's plots/ folder.

matplotlib is imported here only, and this module only when plotting; figures are `Figure` objects rendered by Agg
(no pyplot, no display, no global figure state).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from dlrun.core.io import write_atomic
from dlrun.run import layout

DPI = 100
TRAIN_COLOUR, VAL_COLOUR, LR_COLOUR, BEST_COLOUR = "tab:blue", "tab:orange", "tab:gray", "tab:green"
# Cells get their count written in them up to this many classes; beyond it the numbers would overlap.
ANNOTATE_MAX_CLASSES = 12
MAX_TICK_LABELS = 60
# ROC curves named in the legend, one per class, up to this many classes; beyond it the legend would cover the plot.
LABELLED_CURVES = 10
# Curves that would lie on one another are drawn this far apart (in rate units), each with its own marker.
ROC_OFFSET = 0.012
ROC_MARKERS = "os^Dv<>pXh"
LOSS_NAMES = {"classification": "cross-entropy", "regression": "MSE on the scaled target"}


@dataclass
class Plots:
    """The PNGs written (by name, in drawing order) and what could not be drawn."""

    paths: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def write_plots(run_dir: Path, tasks: dict[str, str], units: dict[str, str], best_epoch: int | None,
                loss_weights: dict[str, float] | None = None) -> Plots:
    """Draw every plot the run's files allow into run_dir/plots; a plot that fails is reported, the others still drawn."""
    run_dir = Path(run_dir)
    drawings: list[tuple[str, Callable[[], Figure]]] = []  # (path inside the run, drawing)
    history = run_dir / layout.HISTORY  # every file is read inside its drawing: a damaged one costs only its plots
    if history.is_file():
        drawings.append((layout.plot_file("loss"), lambda: loss_figure(pd.read_csv(history), tasks, best_epoch, loss_weights)))
        drawings.append((layout.plot_file("val_metrics"), lambda: val_metrics_figure(pd.read_csv(history), units, best_epoch)))
    predictions = run_dir / layout.PREDICTIONS
    for target, task in tasks.items():
        confusion = run_dir / layout.confusion_file(target)
        if task == "classification" and confusion.is_file():
            drawings.append((layout.plot_file("confusion", target), lambda t=target, c=confusion: confusion_figure(read_confusion(c), t)))
            if predictions.is_file():
                drawings.append((layout.plot_file("roc", target),
                                 lambda t=target, c=confusion: roc_figure(predictions, t, read_confusion(c).index)))
        elif task == "regression" and predictions.is_file():
            drawings.append((layout.plot_file("regression", target), lambda t=target: regression_figure(predictions, t, units.get(t))))
    if (run_dir / layout.DIAGNOSTICS).is_file():
        drawings.append((layout.plot_file("diagnostics"), lambda: diagnostics_figure(pd.read_csv(run_dir / layout.DIAGNOSTICS))))
    result = Plots()
    for name, draw in drawings:
        try:
            save_figure(draw(), run_dir / name)
        except Exception as exc:  # a plot is a convenience: one that fails must not cost the others or the run
            result.problems.append(f"plot {Path(name).name} was not drawn ({type(exc).__name__}: {exc})")
        else:
            result.paths.append(run_dir / name)
    return result


def save_figure(fig: Figure, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    write_atomic(path, lambda fh: fh.write(buffer.getvalue()), mode="wb")


def new_figure(width: float = 6.4, height: float = 4.0) -> Figure:
    # constrained layout moves titles, labels and legends apart so no text overlaps
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _mark_best(ax, best_epoch: int | None) -> None:
    if best_epoch:
        ax.axvline(best_epoch, color=BEST_COLOUR, linestyle=":", linewidth=1.5, label=f"best epoch {best_epoch}")


def target_loss_columns(history: pd.DataFrame, tasks: dict[str, str]) -> dict[str, tuple[str, str]]:
    """{target: (train column, validation column)} of a multi-target run's per-target losses in metrics.csv."""
    return {target: (f"train_{target}_loss", f"val_{target}_loss") for target in tasks
            if len(tasks) > 1 and f"train_{target}_loss" in history and f"val_{target}_loss" in history}


def loss_figure(history: pd.DataFrame, tasks: dict[str, str], best_epoch: int | None,
                loss_weights: dict[str, float] | None = None) -> Figure:
    """Train and validation loss per epoch, the best epoch marked; the learning rate on a second axis when it changes;
    with several targets, a second panel of each target's own loss with its weight in the total."""
    per_target = target_loss_columns(history, tasks)
    fig = new_figure(11 if per_target else 6.4, 4.4 if per_target else 4.0)
    ax = fig.add_subplot(1, 2 if per_target else 1, 1)
    ax.plot(history["epoch"], history["train_loss"], color=TRAIN_COLOUR, label="train loss")
    ax.plot(history["epoch"], history["val_loss"], color=VAL_COLOUR, label="validation loss")
    _mark_best(ax, best_epoch)
    ax.set_xlabel("epoch")
    kinds = sorted({LOSS_NAMES[task] for task in tasks.values()})
    # several targets: each one's kind of loss is in the right panel's legend; this axis is their weighted sum
    ax.set_ylabel("loss (weighted sum over targets)" if per_target else f"loss ({' + '.join(kinds)})" if kinds else "loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    lines = ax.get_legend_handles_labels()[0]
    rates = history["lr"].dropna().unique()
    if len(rates) > 1:  # a constant rate would only take an axis to draw a flat line with an offset label
        lr_axis = ax.twinx()
        lr_axis.plot(history["epoch"], history["lr"], color=LR_COLOUR, linestyle="--", linewidth=1, label="learning rate")
        lr_axis.set_ylabel("learning rate", color=LR_COLOUR)
        lr_axis.tick_params(axis="y", colors=LR_COLOUR)
        lr_axis.set_ylim(0, history["lr"].max() * 1.1)
        lr_axis.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        lines += lr_axis.get_legend_handles_labels()[0]
    # below the axes: a legend inside would hide some curve on some run
    ax.legend(lines, [line.get_label() for line in lines], loc="upper center", bbox_to_anchor=(0.5, -0.14),
              ncol=min(len(lines), 2 if per_target else 4), fontsize="small")
    ax.set_title("Loss per epoch" + (f" (learning rate {rates[0]:.3g} throughout)" if len(rates) == 1 else ""))
    if per_target:
        _target_losses(fig.add_subplot(1, 2, 2), history, per_target, loss_weights or {}, best_epoch)
    return fig


def _target_losses(ax, history: pd.DataFrame, columns: dict[str, tuple[str, str]], weights: dict[str, float],
                   best_epoch: int | None) -> None:
    """Each target's own loss (train dashed, validation solid), its weight in the legend."""
    for n, (target, (train, val)) in enumerate(columns.items()):
        colour = f"C{(n + 2) % 10}"  # C0 and C1 are the total's train and validation colours
        weight = f"weight {weights.get(target, 1.0):g}"
        ax.plot(history["epoch"], history[train], color=colour, linestyle="--", label=f"{target} train ({weight})")
        ax.plot(history["epoch"], history[val], color=colour, label=f"{target} validation ({weight})")
    _mark_best(ax, best_epoch)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss of the target")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize="small")
    ax.set_title("Loss per target (total = sum of weight x loss)")


def val_metrics_figure(history: pd.DataFrame, units: dict[str, str], best_epoch: int | None) -> Figure:
    """One small panel per validation metric recorded each epoch."""
    columns = [c for c in history.columns if c.startswith("val_") and not c.endswith("_loss")]  # losses: loss.png
    n_cols = min(3, max(len(columns), 1))
    n_rows = max(1, -(-len(columns) // n_cols))
    fig = new_figure(3.6 * n_cols, 2.8 * n_rows)
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax, column in zip(axes, columns):
        ax.plot(history["epoch"], history[column], color=VAL_COLOUR)
        _mark_best(ax, best_epoch)
        name = column.removeprefix("val_")
        ax.set_title(name, fontsize="medium")
        ax.set_ylabel(_error_unit(name, units) or "")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in axes[len(columns):]:
        ax.set_visible(False)
    fig.suptitle("Validation metrics per epoch" + (f" (dotted: best epoch {best_epoch})" if best_epoch else ""))
    return fig


def _error_unit(metric: str, units: dict[str, str]) -> str | None:
    """The unit of an error metric: `mae` of a single target, or `<target>_rmse` with several."""
    if metric in ("mae", "rmse"):
        return next(iter(units.values())) if len(units) == 1 else None
    target, _, name = metric.rpartition("_")
    return units.get(target) if name in ("mae", "rmse") else None


def read_confusion(path: Path) -> pd.DataFrame:
    """confusion_<target>.csv as counts indexed by true class, columns predicted class (names as text)."""
    frame = pd.read_csv(path, dtype={"true": str}).set_index("true")
    frame.columns = [c.removeprefix("pred_") for c in frame.columns]
    return frame


def confusion_figure(counts: pd.DataFrame, target: str) -> Figure:
    """Test-split confusion matrix: raw counts and each true class's row as fractions."""
    n_classes = len(counts)
    size = min(4.2 + 0.25 * n_classes, 9)
    fig = new_figure(2 * size, size)
    totals = counts.sum(axis=1).to_numpy(dtype=float)
    normalised = counts.to_numpy(dtype=float) / np.where(totals > 0, totals, 1)[:, None]
    for ax, values, title, fmt in ((fig.add_subplot(1, 2, 1), counts.to_numpy(), "counts", "{:.0f}"),
                                   (fig.add_subplot(1, 2, 2), normalised, "row-normalised (recall per class)", "{:.2f}")):
        image = ax.imshow(values, cmap="Blues", vmin=0)
        fig.colorbar(image, ax=ax, shrink=0.8)
        # Past MAX_TICK_LABELS classes only every k-th class is named, and the names shrink to fit their rows.
        every = math.ceil(n_classes / MAX_TICK_LABELS)
        ticks = range(0, n_classes, every)
        fontsize = min(10.0, 450 / len(ticks))
        # beyond three classes the names stand upright: side by side, long names would run into each other
        ax.set_xticks(ticks, [str(counts.columns[i]) for i in ticks], rotation=90 if n_classes > 3 else 0,
                      fontsize=fontsize)
        ax.set_yticks(ticks, [str(counts.index[i]) for i in ticks], fontsize=fontsize)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(title, fontsize="medium")
        if n_classes <= ANNOTATE_MAX_CLASSES:
            high = values.max() if values.size else 0
            for i in range(n_classes):
                for j in range(n_classes):
                    ax.text(j, i, fmt.format(values[i, j]), ha="center", va="center", fontsize="small",
                            color="white" if high and values[i, j] > high / 2 else "black")
    fig.suptitle(f"Confusion matrix of {target} (test split, {int(totals.sum())} rows)")
    return fig


def roc_points(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(false positive rates, true positive rates, area under the curve) of one-vs-rest scores; both classes present."""
    order = np.argsort(-scores, kind="mergesort")
    scores, positive = scores[order], positive[order].astype(float)
    last_of_each_score = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    true_pos = np.cumsum(positive)[last_of_each_score]
    false_pos = last_of_each_score + 1 - true_pos
    tpr = np.r_[0.0, true_pos / true_pos[-1]]
    fpr = np.r_[0.0, false_pos / false_pos[-1]]
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # trapezoids (np.trapezoid needs numpy 2)
    return fpr, tpr, area


def roc_curves(predictions_csv: Path, target: str, classes) -> tuple[list[tuple[str, np.ndarray, np.ndarray, float]], list[str]]:
    """(class, fpr, tpr, AUC) of every class with test rows of both kinds, highest AUC first; and the classes left out."""
    rows = pd.read_csv(predictions_csv, dtype={target: str})
    truth = rows[target].to_numpy()
    curves, skipped = [], []
    for name in classes:
        positive = truth == name
        column = f"{target}_proba_{name}"
        if column not in rows or positive.all() or not positive.any():
            skipped.append(str(name))
            continue
        curves.append((str(name), *roc_points(rows[column].to_numpy(dtype=float), positive)))
    return sorted(curves, key=lambda curve: -curve[3]), skipped  # stable: equal AUCs keep the classes' order


def overlap_offsets(curves: list[tuple[str, np.ndarray, np.ndarray, float]]) -> list[int]:
    """How many steps of ROC_OFFSET each curve is drawn away from its true place: the number of curves before it that
    it would lie on (TPR within 0.01 of each other at every false positive rate), so a curve of its own is drawn
    exactly and five classes with AUC 1.000 show as five visible lines, not one."""
    grid = np.linspace(0, 1, 201)
    # the upper envelope at each rate: the vertical steps of a ROC curve are where curves typically coincide
    shapes = [np.interp(grid, fpr, tpr, right=1.0) for _, fpr, tpr, _ in curves]
    return [sum(np.abs(shapes[i] - shapes[j]).max() < 0.01 for j in range(i)) for i in range(len(curves))]


def roc_figure(predictions_csv: Path, target: str, classes) -> Figure:
    """One-vs-rest ROC curve of every class on the test split (classes absent from it are named, not drawn); the
    legend lists them by AUC, highest first. Curves that would lie on one another are shifted apart by a small
    offset (said in the legend) and each has its own marker, so none hides under another or under the axis.

    Past LABELLED_CURVES classes a legend entry per class would cover the plot: every curve is drawn faintly and only
    the classes with the highest and lowest AUC are coloured and named."""
    curves, skipped = roc_curves(predictions_csv, target, classes)
    fig = new_figure(7.6, 5.0)
    ax = fig.add_subplot()
    labelled = curves
    if len(curves) > LABELLED_CURVES:
        labelled = [*curves[:3], *curves[-3:]]
    if len(labelled) < len(curves):
        for _, fpr, tpr, _ in curves:
            ax.plot(fpr, tpr, color="0.75", linewidth=0.8)
    offsets = overlap_offsets(labelled)
    for n, ((name, fpr, tpr, auc), offset) in enumerate(zip(labelled, offsets)):
        shift = offset * ROC_OFFSET  # right and down: a perfect curve's corner stays inside the plot
        ax.plot(fpr + shift, tpr - shift, label=f"{name} (AUC {auc:.3f})", marker=ROC_MARKERS[n % len(ROC_MARKERS)],
                markevery=max(1, len(fpr) // 8), markersize=5, fillstyle="none", linewidth=1.4, zorder=3)
    ax.plot([0, 1], [0, 1], color=LR_COLOUR, linestyle="--", linewidth=1, label="chance")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    margin = 0.03 + ROC_OFFSET * max(offsets, default=0)
    ax.set_xlim(-0.03, 1 + margin)  # a curve along the left or top edge is drawn inside the axes, not under them
    ax.set_ylim(-margin, 1.03)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    notes = []
    if len(labelled) < len(curves):
        mean_auc = np.mean([curve[3] for curve in curves])
        notes.append(f"{len(curves)} classes, mean AUC {mean_auc:.3f}\nhighest and lowest 3 (others grey)")
    if any(offsets):
        notes.append(f"overlapping curves shifted\n{ROC_OFFSET:g} apart to stay visible")
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize="small", title="\n".join(notes) or None,
              title_fontsize="small")
    title = f"ROC curves of {target}, one class vs rest (test split)"
    if skipped:
        shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        title += f"\nnot drawn (no test rows or only these): {shown}"
    ax.set_title(title, fontsize="medium")
    return fig


def regression_figure(predictions_csv: Path, target: str, unit: str | None) -> Figure:
    """Predicted against true values in the target's own units, and the residuals against the predictions."""
    rows = pd.read_csv(predictions_csv)
    true, pred = rows[target].to_numpy(dtype=float), rows[f"{target}_pred"].to_numpy(dtype=float)
    residual = true - pred
    suffix = f" ({unit})" if unit else ""
    fig = new_figure(11, 4.6)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    alpha = 0.6 if len(true) < 500 else 0.3
    left.scatter(true, pred, s=10, alpha=alpha, color=TRAIN_COLOUR)
    low, high = np.nanmin([true.min(), pred.min()]), np.nanmax([true.max(), pred.max()])
    left.plot([low, high], [low, high], color=LR_COLOUR, linestyle="--", linewidth=1, label="perfect prediction")
    left.set_xlabel(f"true {target}{suffix}")
    left.set_ylabel(f"predicted {target}{suffix}")
    left.set_title("predicted vs true", fontsize="medium")
    left.legend(loc="upper left", fontsize="small")
    right.scatter(pred, residual, s=10, alpha=alpha, color=VAL_COLOUR)
    right.axhline(0, color=LR_COLOUR, linestyle="--", linewidth=1)
    right.set_xlabel(f"predicted {target}{suffix}")
    right.set_ylabel(f"residual: true - predicted{suffix}")
    right.set_title(f"residuals (mean {residual.mean():.3g}, std {residual.std():.3g})", fontsize="medium")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.suptitle(f"{target} on the test split ({len(true)} rows)")
    return fig


def diagnostics_figure(frame: pd.DataFrame) -> Figure:
    """Per layer and epoch: gradient norm, weight norm, update-to-weight ratio and dead ReLU units."""
    fig = new_figure(11, 7)
    axes = fig.subplots(2, 2).ravel()
    panels = (("grad_norm", "gradient norm (fixed training batch)", True),
              ("weight_norm", "weight norm", False),
              ("update_ratio", "update / weight norm over the epoch", True),
              ("dead_fraction", "fraction of ReLU units that never fire", False))
    for ax, (column, title, log) in zip(axes, panels):
        for layer, rows in frame.groupby("layer", sort=False):
            values = rows[column]
            if values.notna().any():
                ax.plot(rows["epoch"], values, label=layer, marker="." if len(rows) < 30 else None)
        if log and (frame[column] > 0).any():
            ax.set_yscale("log")
        if column == "dead_fraction":
            ax.set_ylim(-0.02, 1.02)
            if frame[column].isna().all():
                ax.text(0.5, 0.5, "no ReLU-family activation", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside right upper", fontsize="small")
    fig.suptitle("Training diagnostics per layer")
    return fig

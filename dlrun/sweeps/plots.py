"""A sweep's PNG plots: the search space coloured by objective, the objective per trial, parameter importances.

Drawn with plots.py's figures (Agg, constrained layout so no text overlaps); imported only when a sweep is summarised.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from optuna.trial import FrozenTrial, TrialState

from dlrun.run.plots import new_figure, save_figure
from dlrun.config.search import Dimension

MAX_PAIRS = 6  # panels in the search-space plot: the first pairs of searched keys


BEST_MARKER = {"marker": "*", "s": 260, "facecolors": "none", "edgecolors": "red", "linewidths": 1.8}
PRUNED_COLOUR = "0.55"


def plot_sweep(sweep_dir: Path, trials: list[FrozenTrial], space: dict[str, Dimension], objective: str, direction: str,
               importances: dict[str, float] | None, best: int | None = None) -> list[Path]:
    """Write search_space.png, objective.png and (when there are importances) importances.png; returns their paths.

    `best` is the best trial's number: it is marked (a red star) in every plot."""
    scored = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.value is not None
              and math.isfinite(t.value)]
    written = [_save(search_space_figure(scored, space, objective, direction, best), sweep_dir / "search_space.png"),
               _save(objective_figure(scored, objective, direction, best), sweep_dir / "objective.png")]
    if importances:
        best_params = next((t.params for t in scored if t.number == best), None)
        written.append(_save(importances_figure(importances, objective, best, best_params), sweep_dir / "importances.png"))
    return written


def value_range(trials: list[FrozenTrial]) -> tuple[float, float] | None:
    """(lowest, highest) objective of the complete trials: what colour scales and axes are fitted to. A pruned trial's
    value is where it stopped (often far off), so it must not stretch them and make every complete trial look alike."""
    values = [t.value for t in trials if t.state == TrialState.COMPLETE]
    return (min(values), max(values)) if values else None


def _axis_values(trials: list[FrozenTrial], key: str, dim: Dimension) -> tuple[list[float], list[str] | None]:
    """Positions on an axis: the value itself, or a choice's index with the choices as tick labels."""
    if dim.choice is None:
        return [float(t.params[key]) for t in trials], None
    labels = [str(choice) for choice in dim.encoded_choices()]
    # Trials that share a choice are spread a little around it (fixed by trial number), so none hides another.
    return [dim.encoded_choices().index(t.params[key]) + ((t.number * 0.618) % 1 - 0.5) * 0.3 for t in trials], labels


def _set_axis(ax, axis: str, key: str, dim: Dimension, labels: list[str] | None) -> None:
    getattr(ax, f"set_{axis}label")(key + (" (log)" if dim.is_log else ""))
    if dim.is_log:
        getattr(ax, f"set_{axis}scale")("log")
    if labels is not None:
        getattr(ax, f"set_{axis}ticks")(range(len(labels)), labels)
        getattr(ax, f"set_{axis}lim")(-0.5, len(labels) - 0.5)  # room around the first and last choice


def _limits(low: float, high: float) -> tuple[float, float]:
    pad = (high - low) * 0.08 or abs(high) * 0.05 or 1.0
    return low - pad, high + pad


def search_space_figure(trials: list[FrozenTrial], space: dict[str, Dimension], objective: str, direction: str,
                        best: int | None = None) -> Figure:
    """Each pair of searched keys as a scatter of the trials; colour = objective of the complete trials (brighter =
    better), pruned trials grey crosses, the best trial a red star."""
    keys = list(space)
    pairs = list(itertools.combinations(keys, 2))[:MAX_PAIRS] or [(keys[0], None)]
    fig = new_figure(5 * len(pairs), 4.2)
    axes = [fig.add_subplot(1, len(pairs), n + 1) for n in range(len(pairs))]
    cmap = "viridis_r" if direction == "minimize" else "viridis"
    values = [t.value for t in trials]
    fitted = value_range(trials)
    scatter = None
    complete = [i for i, t in enumerate(trials) if t.state == TrialState.COMPLETE]
    pruned = [i for i, t in enumerate(trials) if t.state == TrialState.PRUNED]
    for ax, (x_key, y_key) in zip(axes, pairs):
        x, x_labels = _axis_values(trials, x_key, space[x_key])
        y, y_labels = _axis_values(trials, y_key, space[y_key]) if y_key else (values, None)
        if not y_key and fitted:  # the objective itself on y: a pruned trial beyond the fitted axis sits on its edge
            y = [min(max(value, _limits(*fitted)[0]), _limits(*fitted)[1]) for value in y]
        if complete:
            scatter = ax.scatter([x[i] for i in complete], [y[i] for i in complete], c=[values[i] for i in complete],
                                 cmap=cmap, marker="o", vmin=fitted[0], vmax=fitted[1], label="complete")
        if pruned:
            ax.scatter([x[i] for i in pruned], [y[i] for i in pruned], color=PRUNED_COLOUR, marker="x",
                       label="pruned (not coloured)")
        for i, t in enumerate(trials):
            if t.number == best:
                ax.scatter([x[i]], [y[i]], label=f"best: trial {best}", zorder=3, **BEST_MARKER)
        _set_axis(ax, "x", x_key, space[x_key], x_labels)
        if y_key:
            _set_axis(ax, "y", y_key, space[y_key], y_labels)
        else:
            ax.set_ylabel(objective)
            if fitted:
                ax.set_ylim(*_limits(*fitted))
    if scatter is not None:
        fig.colorbar(scatter, ax=axes, label=f"{objective} (complete trials)")
    if trials:
        axes[0].legend(loc="best", fontsize="small")
    fig.suptitle(f"search space: {len(trials)} trials coloured by {objective} ({direction})")
    return fig


def objective_figure(trials: list[FrozenTrial], objective: str, direction: str, best: int | None = None) -> Figure:
    """The objective of each trial in trial order and the best so far, the y-axis fitted to the complete trials.

    A pruned trial is drawn at the value it stopped at; one beyond the axis sits on its edge as a triangle."""
    fig = new_figure(7, 4.2)
    ax = fig.add_subplot()
    complete = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.number)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    ax.scatter([t.number for t in complete], [t.value for t in complete], marker="o", label="complete")
    fitted = value_range(trials)
    low, high = _limits(*fitted) if fitted else (None, None)
    inside = [t for t in pruned if fitted is None or low <= t.value <= high]
    if inside:
        ax.scatter([t.number for t in inside], [t.value for t in inside], marker="x", color=PRUNED_COLOUR,
                   label="pruned (its last value)")
    for edge, marker, beyond in ((high, "^", lambda v: v > high), (low, "v", lambda v: v < low)):
        outside = [t for t in pruned if fitted is not None and beyond(t.value)]
        if outside:
            ax.scatter([t.number for t in outside], [edge] * len(outside), marker=marker, color=PRUNED_COLOUR,
                       clip_on=False, label=f"pruned, {'above' if marker == '^' else 'below'} the axis")
    better = min if direction == "minimize" else max
    running_best = list(itertools.accumulate((t.value for t in complete), better))
    if complete:
        ax.step([t.number for t in complete], running_best, where="post", color="black", label="best so far")
        ax.set_ylim(low, high)
    for t in complete:
        if t.number == best:
            ax.scatter([t.number], [t.value], label=f"best: trial {best}", zorder=3, **BEST_MARKER)
    ax.set_xlabel("trial")
    ax.set_ylabel(objective)
    ax.legend(loc="best", fontsize="small")
    ax.set_title(f"{objective} per trial ({direction})")
    return fig


def importances_figure(importances: dict[str, float], objective: str, best: int | None = None,
                       best_params: dict[str, Any] | None = None) -> Figure:
    """fANOVA importance per searched key; each bar names the best trial's value of that key."""
    names = list(importances)[::-1]  # most important on top
    fig = new_figure(7, 0.6 * len(names) + 1.5)
    ax = fig.add_subplot()
    bars = ax.barh(names, [importances[name] for name in names])
    if best_params:
        ax.bar_label(bars, [f" best: {_short(best_params.get(name))}" for name in names], fontsize="small", color="red")
        ax.set_xlim(0, max(importances.values()) * 1.45)  # room for the labels
    ax.set_xlabel(f"importance for {objective} (fANOVA, sums to 1)")
    ax.set_title("parameter importances" + (f" (best: trial {best})" if best is not None else ""))
    return fig


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _save(fig: Figure, path: Path) -> Path:
    save_figure(fig, path)
    return path

"""A sweep's PNG plots: the search space coloured by objective, the objective per trial, parameter importances.

Drawn with plots.py's figures (Agg, constrained layout so no text overlaps); imported only when a sweep is summarised.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

from matplotlib.figure import Figure
from optuna.trial import FrozenTrial, TrialState

from dlrun.run.plots import new_figure, save_figure
from dlrun.config.search import Dimension

MAX_PAIRS = 6  # panels in the search-space plot: the first pairs of searched keys


def plot_sweep(sweep_dir: Path, trials: list[FrozenTrial], space: dict[str, Dimension], objective: str, direction: str,
               importances: dict[str, float] | None) -> list[Path]:
    """Write search_space.png, objective.png and (when there are importances) importances.png; returns their paths."""
    scored = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.value is not None
              and math.isfinite(t.value)]
    written = [_search_space(sweep_dir / "search_space.png", scored, space, objective, direction),
               _objective_history(sweep_dir / "objective.png", scored, objective, direction)]
    if importances:
        written.append(_importances(sweep_dir / "importances.png", importances, objective))
    return written


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


def _search_space(path: Path, trials: list[FrozenTrial], space: dict[str, Dimension], objective: str, direction: str) -> Path:
    """Each pair of searched keys as a scatter of the trials; colour = objective, brighter = better; x = pruned."""
    keys = list(space)
    pairs = list(itertools.combinations(keys, 2))[:MAX_PAIRS] or [(keys[0], None)]
    fig = new_figure(5 * len(pairs), 4.2)
    axes = [fig.add_subplot(1, len(pairs), n + 1) for n in range(len(pairs))]
    cmap = "viridis_r" if direction == "minimize" else "viridis"
    values = [t.value for t in trials]
    scatter = None
    for ax, (x_key, y_key) in zip(axes, pairs):
        x, x_labels = _axis_values(trials, x_key, space[x_key])
        y, y_labels = _axis_values(trials, y_key, space[y_key]) if y_key else (values, None)
        for state, marker in ((TrialState.COMPLETE, "o"), (TrialState.PRUNED, "x")):
            picked = [i for i, t in enumerate(trials) if t.state == state]
            if picked:
                scatter = ax.scatter([x[i] for i in picked], [y[i] for i in picked], c=[values[i] for i in picked],
                                     cmap=cmap, marker=marker, vmin=min(values), vmax=max(values),
                                     label=state.name.lower())
        _set_axis(ax, "x", x_key, space[x_key], x_labels)
        if y_key:
            _set_axis(ax, "y", y_key, space[y_key], y_labels)
        else:
            ax.set_ylabel(objective)
    if scatter is not None:
        fig.colorbar(scatter, ax=axes, label=objective)
        axes[0].legend(loc="best", fontsize="small")
    fig.suptitle(f"search space: {len(trials)} trials coloured by {objective} ({direction})")
    return _save(fig, path)


def _objective_history(path: Path, trials: list[FrozenTrial], objective: str, direction: str) -> Path:
    """The objective of each trial in trial order, and the best so far (complete trials only: pruned ones stopped early)."""
    fig = new_figure(7, 4.2)
    ax = fig.add_subplot()
    for state, marker in ((TrialState.COMPLETE, "o"), (TrialState.PRUNED, "x")):
        picked = [t for t in trials if t.state == state]
        ax.scatter([t.number for t in picked], [t.value for t in picked], marker=marker, label=state.name.lower())
    complete = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.number)
    better = min if direction == "minimize" else max
    running_best = list(itertools.accumulate((t.value for t in complete), better))
    if complete:
        ax.step([t.number for t in complete], running_best, where="post", color="black", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(objective)
    ax.legend(loc="best", fontsize="small")
    ax.set_title(f"{objective} per trial ({direction})")
    return _save(fig, path)


def _importances(path: Path, importances: dict[str, float], objective: str) -> Path:
    names = list(importances)[::-1]  # most important on top
    fig = new_figure(7, 0.6 * len(names) + 1.5)
    ax = fig.add_subplot()
    ax.barh(names, [importances[name] for name in names])
    ax.set_xlabel(f"importance for {objective} (fANOVA, sums to 1)")
    ax.set_title("parameter importances")
    return _save(fig, path)


def _save(fig: Figure, path: Path) -> Path:
    save_figure(fig, path)
    return path

"""The ensemble members of a TabM run (model.type: tabm) on the test rows, one picture per target: how far the k
members disagree row by row, and each member's own test score against the ensemble's.

Drawn from members.csv (run/members.py) and predictions.csv, which hold the same test rows in the same order.
Spread per row: the standard deviation over members of the probability of the ensemble's predicted class
(classification) or of the predicted value in the target's own units (regression). Score: accuracy, or RMSE in
the target's units (lower is better). Imported only when drawing: it loads matplotlib, like run/plots.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from dlrun.run import layout
from dlrun.run.plots import Plots, new_figure, save_figure


def member_spread(members: pd.DataFrame, predictions: pd.DataFrame, target: str, task: str
                  ) -> tuple[np.ndarray, np.ndarray, float, str]:
    """(spread per row, score per member, the ensemble's score, the score's name) for one target."""
    rows = len(members)
    truth = predictions[target].iloc[:rows]
    ensemble = predictions[f"{target}_pred"].iloc[:rows]
    if task == "classification":
        pattern = re.compile(rf"^{re.escape(target)}_member(\d+)_proba_(.*)$")
        parsed = [(int(m.group(1)), m.group(2), column) for column in members.columns if (m := pattern.match(column))]
        k = 1 + max(member for member, _, _ in parsed)
        classes = list(dict.fromkeys(name for _, name, _ in parsed))
        proba = np.stack([members[[f"{target}_member{i}_proba_{name}" for name in classes]].to_numpy() for i in range(k)],
                         axis=1)  # (rows, k, n_classes)
        chosen = proba.mean(axis=1).argmax(axis=1)  # the ensemble's class: the mean probability's largest
        spread = proba[np.arange(rows), :, chosen].std(axis=1)
        names = np.asarray(classes, dtype=object)
        truth_text = truth.astype(str).to_numpy()
        scores = np.array([(names[proba[:, i].argmax(axis=1)] == truth_text).mean() for i in range(k)])
        return spread, scores, float((ensemble.astype(str).to_numpy() == truth_text).mean()), "accuracy"
    k = sum(1 for column in members.columns if re.fullmatch(rf"{re.escape(target)}_member\d+", column))
    values = members[[f"{target}_member{i}" for i in range(k)]].to_numpy()  # (rows, k)
    truth_values = truth.astype(float).to_numpy()[:, None]
    scores = np.sqrt(((values - truth_values) ** 2).mean(axis=0))
    ensemble_rmse = float(np.sqrt(((ensemble.astype(float).to_numpy() - truth_values[:, 0]) ** 2).mean()))
    return values.std(axis=1), scores, ensemble_rmse, "RMSE"


def member_figure(members: pd.DataFrame, predictions: pd.DataFrame, target: str, task: str, unit: str | None):
    spread, scores, ensemble, score_name = member_spread(members, predictions, target, task)
    unit_text = f" ({unit})" if unit and task == "regression" else ""
    fig = new_figure(10, 3.8)
    left, right = fig.subplots(1, 2)
    left.hist(spread, bins=30, color="tab:blue", alpha=0.8)
    left.set_xlabel("sd over members of the predicted class's probability" if task == "classification"
                    else f"sd over members of the prediction{unit_text}")
    left.set_ylabel("test rows")
    left.yaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_title(f"{target}: disagreement of {len(scores)} members (median {np.median(spread):.3g})")
    order = np.argsort(scores)
    right.plot(np.arange(len(scores)), scores[order], "o", color="tab:gray", label="one member")
    right.axhline(scores.mean(), color="tab:gray", linestyle="--", linewidth=1, label=f"member mean {scores.mean():.4g}")
    right.axhline(ensemble, color="tab:green", linewidth=2, label=f"ensemble {ensemble:.4g}")
    right.set_xlabel(f"members, sorted by {score_name}")
    right.set_ylabel(f"test {score_name}{unit_text}" + (" (lower is better)" if score_name == "RMSE" else ""))
    right.set_title(f"{target}: each member against the ensemble")
    right.legend(fontsize="small")
    right.grid(alpha=0.3)
    return fig


def write_member_plots(run_dir: Path, tasks: dict[str, str], units: dict[str, str], plots: Plots) -> None:
    """plots/members_<target>.png for each target of a run that left members.csv; added to `plots` (paths or problems)."""
    run_dir = Path(run_dir)
    members_path, predictions_path = run_dir / layout.MEMBERS, run_dir / layout.PREDICTIONS
    if not members_path.is_file() or not predictions_path.is_file():
        return
    for target, task in tasks.items():
        name = layout.plot_file("members", target)
        try:
            figure = member_figure(pd.read_csv(members_path), pd.read_csv(predictions_path), target, task, units.get(target))
            save_figure(figure, run_dir / name)
        except Exception as exc:  # a plot is a convenience: one that fails must not cost the report
            plots.problems.append(f"plot {Path(name).name} was not drawn ({type(exc).__name__}: {exc})")
        else:
            plots.paths.append(run_dir / name)

"""Issue 17 item 4: a grid search is pruned only when asked; the sweep plots fit their colour scale and axes to the
complete trials, draw pruned ones apart at their last value and mark the best trial; best_config.yaml trains as a
normal run, report included. The plots are checked through the data they draw, not their pixels."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from dlrun.config.search import SearchConfig
from dlrun.sweeps.driver import make_pruner
from dlrun.sweeps.plots import importances_figure, objective_figure, search_space_figure
from test_plots import assert_no_text_overlaps

SPACE = {"optimizer.lr": {"log_uniform": [1.0e-4, 1.0e-1]}, "model.hidden": {"choice": [[8], [16, 8]]}}
GRID = {"optimizer.lr": {"log_uniform": [1.0e-4, 1.0e-1], "grid": [0.001, 0.01]}, "model.hidden": {"choice": [[8], [16, 8]]}}


@pytest.mark.parametrize("sampler, pruner, expected", [
    ("grid", None, optuna.pruners.NopPruner),  # a grid means every point: never pruned unless asked
    ("grid", "median", optuna.pruners.MedianPruner),
    ("grid", "successive_halving", optuna.pruners.SuccessiveHalvingPruner),
    ("tpe", None, optuna.pruners.MedianPruner),
    ("random", None, optuna.pruners.MedianPruner),
    ("random", "none", optuna.pruners.NopPruner),
])
def test_grid_search_is_pruned_only_when_the_config_asks(sampler, pruner, expected):
    search = SearchConfig(space=GRID, sampler=sampler, **({"pruner": pruner} if pruner else {}))
    assert type(make_pruner(search)) is expected


@pytest.fixture
def trials():
    """Four complete trials (objective 1.0-1.3) and two pruned far above them (40, 90) and one below (-50)."""
    study = optuna.create_study()
    distributions = {"optimizer.lr": FloatDistribution(1e-4, 1e-1, log=True), "model.hidden": CategoricalDistribution(["[8]", "[16, 8]"])}
    rows = [(1e-3, "[8]", 1.2, TrialState.COMPLETE), (1e-2, "[16, 8]", 1.0, TrialState.COMPLETE),
            (3e-2, "[8]", 40.0, TrialState.PRUNED), (5e-4, "[16, 8]", 1.3, TrialState.COMPLETE),
            (2e-4, "[8]", 90.0, TrialState.PRUNED), (5e-2, "[16, 8]", 1.1, TrialState.COMPLETE),
            (1e-4, "[8]", -50.0, TrialState.PRUNED)]
    for lr, hidden, value, state in rows:
        study.add_trial(create_trial(params={"optimizer.lr": lr, "model.hidden": hidden}, distributions=distributions,
                                     value=value, state=state, intermediate_values={1: value}))
    return study.get_trials()


def space():
    return SearchConfig(space=SPACE).space


def test_search_space_colours_span_the_complete_trials_only_and_mark_the_best(trials):
    fig = search_space_figure(trials, space(), "val_mae", "minimize", best=1)
    ax = fig.axes[0]
    coloured = [c for c in ax.collections if c.get_array() is not None and c.get_label() == "complete"]
    assert len(coloured) == 1 and coloured[0].get_clim() == (1.0, 1.3)
    assert sorted(coloured[0].get_array()) == [1.0, 1.1, 1.2, 1.3]
    pruned = next(c for c in ax.collections if c.get_label().startswith("pruned"))
    assert len(pruned.get_offsets()) == 3 and pruned.get_array() is None  # drawn apart, grey, not on the scale
    best = next(c for c in ax.collections if c.get_label() == "best: trial 1")
    assert best.get_offsets()[0][0] == pytest.approx(1e-2)
    assert_no_text_overlaps(fig)


def test_objective_axis_fits_the_complete_trials_and_pruned_ones_sit_on_its_edge(trials):
    fig = objective_figure(trials, "val_mae", "minimize", best=1)
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    assert 0.9 < low < 1.0 and 1.3 < high < 1.4  # not stretched to -50 .. 90
    series = {c.get_label(): np.asarray(c.get_offsets()) for c in ax.collections}
    assert sorted(series["complete"][:, 1]) == [1.0, 1.1, 1.2, 1.3]
    assert list(series["pruned, above the axis"][:, 0]) == [2, 4] and set(series["pruned, above the axis"][:, 1]) == {high}
    assert list(series["pruned, below the axis"][:, 0]) == [6] and set(series["pruned, below the axis"][:, 1]) == {low}
    assert series["best: trial 1"].tolist() == [[1, 1.0]]
    assert_no_text_overlaps(fig)


def test_importances_name_the_best_trials_values():
    fig = importances_figure({"optimizer.lr": 0.8, "model.hidden": 0.2}, "val_mae", 1,
                             {"optimizer.lr": 0.01, "model.hidden": "[16, 8]"})
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == [" best: [16, 8]", " best: 0.01"] and "trial 1" in fig.axes[0].get_title()
    assert_no_text_overlaps(fig)


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory):
    """A finished three-trial sweep of SGD's learning rate and momentum, its config asking for reports."""
    from conftest import make_regression_frame, write_config
    from dlrun.config.load import load_config
    from dlrun.sweeps.driver import sweep

    root = tmp_path_factory.mktemp("sweep")
    data = root / "houses.csv"
    make_regression_frame(80).to_csv(data, index=False)
    space = {"optimizer.lr": {"log_uniform": [1e-3, 1e-1]}, "optimizer.momentum": {"uniform": [0.85, 0.99]}}
    config = write_config(root / "houses.yaml", {"path": str(data), "target": "price"}, name="houses", report=True,
                          optimizer={"name": "sgd", "lr": 0.01}, train={"epochs": 2},
                          search={"space": space, "sampler": "random", "trials": 3})
    return sweep(load_config(config), root / "runs")


def test_best_config_trains_as_a_normal_run_with_its_report(small_sweep, tmp_path):
    import dlrun
    from dlrun.config.load import load_config

    trial_dir = small_sweep.sweep_dir / small_sweep.best["run_dir"]
    assert not (trial_dir / "report.html").exists()  # trials skip their plots, as before
    best = load_config(small_sweep.sweep_dir / "best_config.yaml")
    assert best.report is True and best.search is None
    run = dlrun.train(best, tmp_path / "again")
    assert (run.run_dir / "report.html").is_file() and (run.run_dir / "plots" / "loss.png").is_file()


def test_sweep_report_in_a_pipe_keeps_trial_numbers_objectives_and_parameter_names(small_sweep):
    import os
    import subprocess
    import sys

    from conftest import REPO
    from dlrun.metrics.names import format_value

    env = {**os.environ, "COLUMNS": "80"}  # piped, as in a script or `| less`
    result = subprocess.run([sys.executable, "-m", "dlrun", "sweep-report", str(small_sweep.sweep_dir)], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    text = result.stderr
    assert "…" not in text and "param:" not in text
    header = next(line for line in text.splitlines() if "objective" in line and "┃" in line)
    assert " lr " in header and " momentum " in header
    rows = [line.split("│") for line in text.splitlines() if line.startswith("│") and "complete" in line]
    assert [(int(cells[1]), cells[3].strip()) for cells in rows] == [
        (row.trial, format_value(row.objective)) for row in small_sweep.trials.itertuples()]

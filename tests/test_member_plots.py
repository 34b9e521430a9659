"""TabM's per-member spread: members.csv written at the end of a tabm run, its plot in the report, nothing for an MLP."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import FAST, make_classification_frame, make_regression_frame, merge
from dlrun.config.load import validate_config
from dlrun.run import layout
from dlrun.run.member_plots import member_spread
from dlrun.run.runner import train

TABM = {"model": {"type": "tabm", "k": 4, "hidden": [16, 8], "dropout": 0.0}}


def _train(tmp_path, kind: str, extra: dict, report: bool = True):
    frame, target = (make_classification_frame(120), "species") if kind == "classification" else (make_regression_frame(120), "price")
    path = tmp_path / f"{kind}.csv"
    frame.to_csv(path, index=False)
    data = {"path": str(path), "target": target, **({"units": {"price": "euros"}} if kind == "regression" else {})}
    cfg = validate_config(merge(FAST, {"data": data, "name": kind, "report": report, **extra}))
    return train(cfg, tmp_path / "runs").run_dir, target


@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_a_tabm_run_writes_each_members_test_predictions_and_draws_their_spread(tmp_path, kind):
    run_dir, target = _train(tmp_path, kind, TABM)
    members = pd.read_csv(run_dir / layout.MEMBERS)
    predictions = pd.read_csv(run_dir / layout.PREDICTIONS)
    assert len(members) == len(predictions)
    if kind == "classification":
        classes = [c.split("_proba_")[1] for c in predictions.columns if c.startswith(f"{target}_proba_")]
        # the ensemble's probability is the mean of the members' (TabM's eval output), in the same rows
        for name in classes:
            mean = members[[f"{target}_member{i}_proba_{name}" for i in range(4)]].mean(axis=1)
            np.testing.assert_allclose(mean, predictions[f"{target}_proba_{name}"], atol=1e-5)
    else:
        # members in euros, not scaled units: their mean is the ensemble's prediction (a linear target scaling)
        mean = members[[f"{target}_member{i}" for i in range(4)]].mean(axis=1)
        np.testing.assert_allclose(mean, predictions[f"{target}_pred"], rtol=1e-5)
        assert members.to_numpy().std() > 1_000  # real units: the prices spread by tens of thousands
    plot = run_dir / layout.plot_file("members", target)
    assert plot.is_file() and plot.stat().st_size > 10_000
    assert "members_" in (run_dir / layout.REPORT).read_text()


def test_a_plain_mlp_run_has_no_members_file_or_plot(tmp_path):
    run_dir, target = _train(tmp_path, "regression", {})
    assert not (run_dir / layout.MEMBERS).exists()
    assert not (run_dir / layout.plot_file("members", target)).exists()


def test_member_scores_and_spread_are_computed_per_member():
    predictions = pd.DataFrame({"y": ["a", "b", "a"], "y_pred": ["a", "b", "b"]})
    # member 0 right on every row, member 1 wrong on every row; the ensemble (mean) picks a, b, b
    members = pd.DataFrame({"y_member0_proba_a": [0.9, 0.2, 0.6], "y_member0_proba_b": [0.1, 0.8, 0.4],
                            "y_member1_proba_a": [0.3, 0.7, 0.2], "y_member1_proba_b": [0.7, 0.3, 0.8]})
    spread, scores, ensemble, name = member_spread(members, predictions, "y", "classification")
    assert name == "accuracy" and list(scores) == [1.0, 0.0] and ensemble == pytest.approx(2 / 3)
    # spread of the ensemble's class's probability: row 0 (class a) 0.9 vs 0.3, row 2 (class b) 0.4 vs 0.8
    np.testing.assert_allclose(spread, [0.3, 0.25, 0.2])
    regression = pd.DataFrame({"v_member0": [1.0, 2.0], "v_member1": [3.0, 2.0]})
    spread, scores, ensemble, name = member_spread(regression, pd.DataFrame({"v": [1.0, 2.0], "v_pred": [2.0, 2.0]}),
                                                   "v", "regression")
    assert name == "RMSE"
    np.testing.assert_allclose(spread, [1.0, 0.0])
    np.testing.assert_allclose(scores, [0.0, np.sqrt(2)])
    assert ensemble == pytest.approx(np.sqrt(0.5))

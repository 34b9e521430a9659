"""Issue 17 item 5: plots that tell the truth. ROC curves that coincide stay visible and the legend is sorted by AUC;
a multi-target run logs and draws each target's train and validation loss with its weight; with SMOTE the training
split is scored on its real rows. Checked through the data behind the plots, not their pixels."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import dlrun
import dlrun.run.plots as plots
from dlrun.config.load import validate_config

from conftest import FAST, make_classification_frame, merge
from test_plots import assert_no_text_overlaps


def test_overlapping_roc_curves_are_shifted_apart_and_listed_by_auc(tmp_path):
    """Seven classes; five perfectly separated (AUC 1.000: one curve up the left edge and along the top), two not."""
    rng = np.random.default_rng(0)
    names = [f"c{k}" for k in range(7)]
    truth = np.repeat(np.arange(7), 20)
    proba = rng.uniform(0, 0.1, (140, 7))
    proba[truth < 5, truth[truth < 5]] = 1.0  # classes 0-4: their rows score highest on their own column
    proba[:, 5:] = rng.uniform(0, 1, (140, 2))  # classes 5 and 6: noise
    frame = pd.DataFrame(proba, columns=[f"kind_proba_{n}" for n in names]).assign(kind=np.array(names)[truth])
    frame.to_csv(tmp_path / "predictions.csv", index=False)

    curves, _ = plots.roc_curves(tmp_path / "predictions.csv", "kind", names)
    fig = plots.roc_figure(tmp_path / "predictions.csv", "kind", names)
    ax = fig.axes[0]
    lines = [line for line in ax.get_lines() if line.get_label() != "chance"]
    aucs = [curve[3] for curve in curves]
    assert aucs == sorted(aucs, reverse=True) and aucs[:5] == [1.0] * 5
    assert [line.get_label() for line in lines] == [f"{name} (AUC {auc:.3f})" for name, _, _, auc in curves]
    perfect = [np.column_stack([line.get_xdata(), line.get_ydata()]) for line in lines[:5]]
    assert len({points.tobytes() for points in perfect}) == 5  # five distinct lines, not one drawn five times
    shifts = [points[0, 0] for points in perfect]  # each starts at (shift, -shift)
    assert shifts == pytest.approx([n * plots.ROC_OFFSET for n in range(5)])
    assert ax.get_xlim()[0] < 0 and ax.get_ylim()[1] > 1  # the left edge and the top are inside the axes
    assert all(line.get_marker() not in (None, "None", "") for line in lines)
    assert len({line.get_marker() for line in lines}) == len(lines)
    np.testing.assert_array_equal(lines[5].get_xdata(), curves[5][1])  # a curve of its own is drawn where it is
    assert "shifted" in ax.get_legend().get_title().get_text()
    assert_no_text_overlaps(fig)


@pytest.fixture(scope="module")
def two_target_run(tmp_path_factory):
    """Two targets from one trunk, weighted 2 and 0.5, through the in-process library."""
    root = tmp_path_factory.mktemp("two_targets")
    frame = make_classification_frame(120)
    frame["score"] = frame["x1"] * 3 + frame["x2"]
    frame.to_csv(root / "pets.csv", index=False)
    cfg = merge(FAST, {"data": {"path": str(root / "pets.csv"), "target": ["species", "score"]}, "name": "two",
                       "train": {"epochs": 4, "loss_weight": {"species": 2.0, "score": 0.5}}})
    return dlrun.train(validate_config(cfg), root / "runs").run_dir


def test_multi_target_runs_log_each_targets_loss_and_the_total_is_their_weighted_sum(two_target_run):
    history = pd.read_csv(two_target_run / "metrics.csv")
    for split in ("train", "val"):
        assert {f"{split}_species_loss", f"{split}_score_loss"} <= set(history.columns)
        weighted = 2.0 * history[f"{split}_species_loss"] + 0.5 * history[f"{split}_score_loss"]
        np.testing.assert_allclose(history[f"{split}_loss"], weighted, rtol=1e-5)
    assert (history["train_species_loss"] > 0).all() and (history["val_score_loss"] > 0).all()


def test_loss_plot_of_a_multi_target_run_draws_each_targets_losses_with_its_weight(two_target_run):
    history = pd.read_csv(two_target_run / "metrics.csv")
    fig = plots.loss_figure(history, {"species": "classification", "score": "regression"}, 2,
                            {"species": 2.0, "score": 0.5})
    total, per_target = fig.axes  # constant learning rate: no third axis
    drawn = {line.get_label(): list(line.get_ydata()) for line in per_target.get_lines()}
    assert drawn["species train (weight 2)"] == list(history["train_species_loss"])
    assert drawn["species validation (weight 2)"] == list(history["val_species_loss"])
    assert drawn["score train (weight 0.5)"] == list(history["train_score_loss"])
    assert drawn["score validation (weight 0.5)"] == list(history["val_score_loss"])
    assert "weighted sum" in total.get_ylabel()
    assert_no_text_overlaps(fig)
    single = plots.loss_figure(history.drop(columns=[c for c in history if c.endswith(("species_loss", "score_loss"))]),
                               {"species": "classification"}, 2)
    assert len(single.axes) == 1


def test_smote_training_split_is_scored_on_its_real_rows(tmp_path):
    from dlrun.inference.batch import evaluate

    frame = make_classification_frame(240, seed=1)
    frame = frame[(frame["species"] != "bird") | (frame.index % 4 == 0)]  # few birds: SMOTE adds many
    frame.to_csv(tmp_path / "pets.csv", index=False)
    cfg = merge(FAST, {"data": {"path": str(tmp_path / "pets.csv"), "target": "species"}, "name": "smote",
                       "augment": {"smote": True}, "train": {"epochs": 2}})
    run = dlrun.train(validate_config(cfg), tmp_path / "runs")
    recorded = json.loads((run.run_dir / "metrics.json").read_text())["train"]
    assert json.loads((run.run_dir / "run.json").read_text())["data"]["rows_added_by_smote"] > 0
    assert recorded["species"] == pytest.approx(evaluate(run.run_dir, split="train").metrics["species"])  # real rows, re-read

"""Metrics, cross-checked against scikit-learn as the reference answer; regression errors in original units."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn import metrics as skm

from dlrun.config.schema import PreprocessConfig
from dlrun.metrics.score import confusion, epoch_columns, score
from dlrun.metrics.names import flatten, is_maximised
from dlrun.data.preprocess import Preprocessor


def class_prep(n_classes: int) -> Preprocessor:
    frame = pd.DataFrame({"x": np.arange(n_classes, dtype=float), "y": [f"c{k}" for k in range(n_classes)]})
    return Preprocessor(PreprocessConfig(), ["x"], ["y"], {"y": "classification"}).fit(frame)


def regression_prep(y: np.ndarray) -> Preprocessor:
    frame = pd.DataFrame({"x": np.zeros(len(y)), "y": y})
    return Preprocessor(PreprocessConfig(), ["x"], ["y"], {"y": "regression"}).fit(frame)


def random_classification(n_rows: int, n_classes: int, seed: int):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n_rows)
    logits = rng.normal(size=(n_rows, n_classes)) + 1.5 * np.eye(n_classes)[y]  # better than chance, far from perfect
    return torch.tensor(logits, dtype=torch.float32), torch.tensor(y)


@pytest.mark.parametrize("n_classes, seed", [(2, 0), (3, 1), (5, 2)])
def test_classification_metrics_match_sklearn(n_classes, seed):
    logits, y = random_classification(300, n_classes, seed)
    got = score({"y": logits}, {"y": y}, class_prep(n_classes))["y"]
    pred, proba, true = logits.argmax(1).numpy(), logits.softmax(1).numpy(), y.numpy()
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(true, pred), abs=1e-6)
    assert got["precision_macro"] == pytest.approx(skm.precision_score(true, pred, average="macro", zero_division=0), abs=1e-6)
    assert got["recall_macro"] == pytest.approx(skm.recall_score(true, pred, average="macro", zero_division=0), abs=1e-6)
    assert got["f1_macro"] == pytest.approx(skm.f1_score(true, pred, average="macro", zero_division=0), abs=1e-6)
    expected_auroc = (
        skm.roc_auc_score(true, proba[:, 1]) if n_classes == 2 else skm.roc_auc_score(true, proba, multi_class="ovr", average="macro")
    )
    assert got["auroc"] == pytest.approx(expected_auroc, abs=1e-5)


def test_macro_metrics_match_sklearn_when_a_class_is_never_predicted():
    logits, y = random_classification(200, 4, 3)
    logits[:, 3] = -100.0  # class 3 is present in the truth but never predicted
    got = score({"y": logits}, {"y": y}, class_prep(4))["y"]
    pred, true = logits.argmax(1).numpy(), y.numpy()
    assert got["precision_macro"] == pytest.approx(skm.precision_score(true, pred, average="macro", zero_division=0), abs=1e-6)
    assert got["recall_macro"] == pytest.approx(skm.recall_score(true, pred, average="macro", zero_division=0), abs=1e-6)
    assert got["f1_macro"] == pytest.approx(skm.f1_score(true, pred, average="macro", zero_division=0), abs=1e-6)


def test_auroc_averages_the_classes_present_in_the_truth():
    logits, y = random_classification(200, 3, 4)
    keep = y != 2  # class 2 never occurs: its AUROC is undefined and is left out of the mean
    logits, y = logits[keep], y[keep]
    got = score({"y": logits}, {"y": y}, class_prep(3))["y"]["auroc"]
    proba, true = logits.softmax(1).numpy(), y.numpy()
    expected = np.mean([skm.roc_auc_score(true == k, proba[:, k]) for k in (0, 1)])
    assert got == pytest.approx(expected, abs=1e-5)


def test_perfect_predictions_score_one():
    y = torch.tensor([0, 1, 2, 2, 1, 0])
    got = score({"y": torch.eye(3)[y] * 10}, {"y": y}, class_prep(3))["y"]
    assert got == pytest.approx({"accuracy": 1.0, "precision_macro": 1.0, "recall_macro": 1.0, "f1_macro": 1.0, "auroc": 1.0})


def test_confusion_matrix_matches_sklearn():
    logits, y = random_classification(150, 4, 5)
    got = confusion(logits, y, 4).numpy()
    np.testing.assert_array_equal(got, skm.confusion_matrix(y.numpy(), logits.argmax(1).numpy(), labels=range(4)))


@pytest.mark.parametrize("seed", [0, 1])
def test_regression_metrics_match_sklearn_in_original_units(seed):
    rng = np.random.default_rng(seed)
    y_dollars = rng.normal(50_000, 12_000, 400)
    prep = regression_prep(y_dollars)
    scaled_y = prep.transform_targets(pd.DataFrame({"y": y_dollars}))["y"]
    scaled_pred = scaled_y + rng.normal(0, 0.4, len(y_dollars)).astype(np.float32)
    got = score({"y": torch.tensor(scaled_pred).unsqueeze(1)}, {"y": torch.tensor(scaled_y)}, prep)["y"]
    true = prep.to_original_units("y", scaled_y.astype(np.float64))
    pred = prep.to_original_units("y", scaled_pred.astype(np.float64))
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(true, pred), rel=1e-5)
    assert got["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(true, pred)), rel=1e-5)
    assert got["r2"] == pytest.approx(skm.r2_score(true, pred), abs=1e-5)
    assert 2_000 < got["mae"] < 8_000  # dollars, not standard deviations


def test_multi_target_scores_every_head():
    logits, y = random_classification(50, 2, 6)
    frame = pd.DataFrame({"x": np.zeros(50), "y": [f"c{k}" for k in y.tolist()], "money": np.linspace(10, 60, 50)})
    prep = Preprocessor(PreprocessConfig(), ["x"], ["y", "money"], {"y": "classification", "money": "regression"}).fit(frame)
    scaled = torch.tensor(prep.transform_targets(frame)["money"])
    got = score({"y": logits, "money": scaled.unsqueeze(1)}, {"y": y, "money": scaled}, prep)
    assert set(got["y"]) == {"accuracy", "precision_macro", "recall_macro", "f1_macro", "auroc"}
    assert got["money"]["mae"] == pytest.approx(0.0, abs=1e-4) and got["money"]["r2"] == pytest.approx(1.0, abs=1e-6)


def test_flatten_names_columns_by_target_only_with_several_targets():
    assert flatten({"y": {"mae": 1.0}}, "val") == {"val_mae": 1.0}
    assert flatten({"a": {"mae": 1.0}, "b": {"accuracy": 0.5}}, "val") == {"val_a_mae": 1.0, "val_b_accuracy": 0.5}
    assert epoch_columns({"y": "regression"}) == ["train_loss", "val_loss", "val_mae", "val_rmse", "val_r2"]


@pytest.mark.parametrize("metric, maximised", [("val_loss", False), ("val_rmse", False), ("val_mae", False),
                                               ("val_r2", True), ("val_accuracy", True), ("val_label_auroc", True)])
def test_direction_of_each_metric(metric, maximised):
    assert is_maximised(metric) is maximised


def test_training_and_serving_import_no_heavy_library_they_do_not_use():
    """torchmetrics (1.4-2 s: it loads scipy.signal and matplotlib), scipy, matplotlib, optuna and scikit-learn stay out
    of `dlrun train` and `dlrun predict` up to the first epoch: start-up pays for torch and pandas only."""
    import subprocess
    import sys

    heavy = ["torchmetrics", "scipy", "matplotlib", "optuna", "sklearn", "imblearn"]
    code = ("import sys, dlrun.cli.commands, dlrun.run.runner, dlrun.inference.batch; "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def sklearn_classification(true, pred, proba, present):
    """scikit-learn's answer for each metric dlrun records; AUROC is one-vs-rest over the classes present in `true`."""
    aurocs = [skm.roc_auc_score(true == k, proba[:, k]) for k in present] if len(present) >= 2 else []
    return {
        "accuracy": skm.accuracy_score(true, pred),
        "precision_macro": skm.precision_score(true, pred, average="macro", zero_division=0),
        "recall_macro": skm.recall_score(true, pred, average="macro", zero_division=0),
        "f1_macro": skm.f1_score(true, pred, average="macro", zero_division=0),
        "auroc": float(np.mean(aurocs)) if len(aurocs) >= 2 else float("nan"),
    }


@pytest.mark.parametrize("seed", range(8))
def test_every_classification_metric_equals_sklearn_with_ties_and_missing_classes(seed):
    rng = np.random.default_rng(100 + seed)
    n_classes, n_rows = int(rng.integers(2, 7)), int(rng.integers(5, 400))
    y = rng.integers(0, n_classes, n_rows)
    if seed % 2:  # a class absent from the truth (and maybe predicted), or never predicted
        y[y == n_classes - 1] = 0
    logits = rng.normal(size=(n_rows, n_classes)) + 1.0 * np.eye(n_classes)[y]
    if seed % 4 < 2:  # coarse logits: many rows share a probability, so the ROC curve has tied steps
        logits = np.round(logits * 2) / 2
    if seed == 4:
        logits[:, 1] = -50.0  # class 1 is never predicted
    logits = torch.tensor(logits, dtype=torch.float32)
    got = score({"y": logits}, {"y": torch.tensor(y)}, class_prep(n_classes))["y"]
    proba = logits.softmax(1).numpy()  # the float32 probabilities dlrun ranks
    expected = sklearn_classification(y, logits.argmax(1).numpy(), proba, sorted(set(y.tolist())))
    assert got == pytest.approx(expected, abs=1e-6, nan_ok=True)


def test_auroc_counts_a_tie_between_a_positive_and_a_negative_as_half():
    logits = torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.0, 0.0], [0.0, 2.0]])  # rows 0 and 1 tie, one of each class
    y = torch.tensor([1, 0, 0, 1])
    # class 1 scores: positives {1, 2}, negatives {1, 0}: pairs (1>0 yes, 1=1 half, 2>1 yes, 2>0 yes) = 3.5 / 4
    assert score({"y": logits}, {"y": y}, class_prep(2))["y"]["auroc"] == pytest.approx(0.875, abs=1e-12)
    assert skm.roc_auc_score(y.numpy(), logits.softmax(1)[:, 1].numpy()) == pytest.approx(0.875)


def test_auroc_is_undefined_with_one_class_in_the_truth_or_diverged_outputs():
    y = torch.tensor([0, 0, 0])
    assert np.isnan(score({"y": torch.randn(3, 3)}, {"y": y}, class_prep(3))["y"]["auroc"])
    y = torch.tensor([0, 1, 2])
    assert np.isnan(score({"y": torch.full((3, 3), float("nan"))}, {"y": y}, class_prep(3))["y"]["auroc"])


@pytest.mark.parametrize("seed", range(4))
def test_confusion_matrix_equals_sklearn_with_missing_classes(seed):
    rng = np.random.default_rng(seed)
    n_classes = 5
    y = rng.integers(0, 3, 60)  # classes 3 and 4 never occur in the truth
    logits = torch.tensor(rng.normal(size=(60, n_classes)), dtype=torch.float32)
    got = confusion(logits, torch.tensor(y), n_classes)
    assert got.dtype == torch.int64
    np.testing.assert_array_equal(got.numpy(), skm.confusion_matrix(y, logits.argmax(1).numpy(), labels=range(n_classes)))


@pytest.mark.parametrize("seed", range(4))
def test_regression_metrics_equal_sklearn_to_1e_6(seed):
    rng = np.random.default_rng(seed)
    y_units = rng.normal(20, 7, int(rng.integers(2, 300)))
    prep = regression_prep(y_units)
    scaled_y = prep.transform_targets(pd.DataFrame({"y": y_units}))["y"]
    scaled_pred = (scaled_y + rng.normal(0, 0.5, len(y_units))).astype(np.float32)
    got = score({"y": torch.tensor(scaled_pred).unsqueeze(1)}, {"y": torch.tensor(scaled_y)}, prep)["y"]
    true = prep.to_original_units("y", np.asarray(scaled_y, dtype=np.float64))
    pred = prep.to_original_units("y", scaled_pred.astype(np.float64))
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(true, pred), rel=1e-9)
    assert got["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(true, pred)), rel=1e-9)
    assert got["r2"] == pytest.approx(skm.r2_score(true, pred), abs=1e-6)


def test_r2_of_a_constant_truth_is_one_when_exact_else_zero_as_in_sklearn():
    prep = regression_prep(np.array([1.0, 2.0, 3.0]))
    flat = torch.zeros(4)
    assert score({"y": flat.unsqueeze(1)}, {"y": flat}, prep)["y"]["r2"] == 1.0 == skm.r2_score(flat, flat)
    off = torch.tensor([0.0, 1.0, 0.0, 0.0])
    assert score({"y": off.unsqueeze(1)}, {"y": flat}, prep)["y"]["r2"] == 0.0 == skm.r2_score(flat, off)

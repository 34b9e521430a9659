"""Training-split augmentation: noise on numeric columns, feature masking, SMOTE, and their place in the pipeline."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import dlrun
from dlrun.training.augment import batch_augment, oversample, smote_target
from dlrun.config.schema import AugmentConfig
from dlrun.config.load import load_config, validate_config
from dlrun.core.errors import ConfigError
from dlrun.data.tensors import to_split
from dlrun.model.mlp import build_model
from dlrun.data.preprocess import Preprocessor
from dlrun.run.runner import resume
from dlrun.training.loop import fit

from conftest import FAST, InterruptAfter, make_classification_frame, merge

CPU = torch.device("cpu")


@pytest.fixture
def config(make_config):
    return lambda data, **sections: load_config(make_config(data, **sections))


def encoded_rows(n_rows: int, n_numeric: int = 3, n_categories: int = 4, seed: int = 0) -> torch.Tensor:
    """(n_rows, n_numeric + n_categories): standard-normal numeric columns, then one one-hot block."""
    rng = np.random.default_rng(seed)
    onehot = np.eye(n_categories)[rng.integers(0, n_categories, n_rows)]
    return torch.from_numpy(np.c_[rng.standard_normal((n_rows, n_numeric)), onehot].astype(np.float32))


def imbalanced_table(counts: dict[int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two numeric columns centred on the class index, then a 3-category one-hot block; y in class order."""
    rng = np.random.default_rng(seed)
    y = np.repeat(list(counts), list(counts.values()))
    numeric = y[:, None] + rng.standard_normal((len(y), 2))
    onehot = np.eye(3)[rng.integers(0, 3, len(y))]
    return np.c_[numeric, onehot].astype(np.float32), y.astype(np.int64)


# ---- per-batch noise and masking ---------------------------------------------------------------
def test_noise_perturbs_numeric_columns_only_with_the_configured_std():
    X = encoded_rows(20_000)
    before = X.clone()
    augment = batch_augment(AugmentConfig(noise_std=0.5), n_numeric=3, seed=0, device=CPU)
    noisy = augment(X)
    assert torch.equal(X, before)  # the batch may be a view of the training split: it must not change
    added = noisy[:, :3] - X[:, :3]
    assert added.std(dim=0).numpy() == pytest.approx([0.5] * 3, rel=0.03)
    assert added.mean(dim=0).numpy() == pytest.approx([0.0] * 3, abs=0.02)
    assert torch.equal(noisy[:, 3:], X[:, 3:])  # one-hot columns untouched


def test_masking_zeroes_about_mask_prob_of_entries_and_leaves_the_rest_as_they_were():
    X = torch.ones(20_000, 8)
    masked = batch_augment(AugmentConfig(mask_prob=0.3), n_numeric=3, seed=0, device=CPU)(X)
    zeroed = masked == 0
    assert zeroed.float().mean().item() == pytest.approx(0.3, abs=0.01)
    assert zeroed.float().mean(dim=0).numpy() == pytest.approx([0.3] * 8, abs=0.02)  # every feature, one-hot included
    assert torch.equal(masked[~zeroed], X[~zeroed])  # no rescaling of the kept entries


def test_augmentation_is_none_when_it_would_change_nothing():
    assert batch_augment(AugmentConfig(), n_numeric=3, seed=0, device=CPU) is None
    assert batch_augment(AugmentConfig(noise_std=1.0), n_numeric=0, seed=0, device=CPU) is None  # nothing numeric
    assert batch_augment(AugmentConfig(mask_prob=0.1), n_numeric=0, seed=0, device=CPU) is not None


def test_the_same_seed_draws_the_same_augmentation():
    X = encoded_rows(100)
    cfg = AugmentConfig(noise_std=0.2, mask_prob=0.2)
    first, second, other = (batch_augment(cfg, 3, seed, CPU) for seed in (7, 7, 8))
    assert torch.equal(first(X), second(X)) and not torch.equal(first(X), other(X))


class RecordInputs(nn.Module):
    """Wraps a model and keeps every input it sees, with whether it was training or being scored."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.seen: list[tuple[bool, torch.Tensor]] = []

    def forward(self, X):
        self.seen.append((self.training, X.detach().clone()))
        return self.model(X)


def test_fit_augments_training_batches_and_scores_validation_on_clean_rows():
    frame = make_classification_frame(80)
    train_rows, val_rows = frame.iloc[:60], frame.iloc[60:]
    cfg = validate_config(merge(FAST, {"data": {"dataset": "synthetic", "batch_size": 16, "shuffle": False},
                                       "augment": {"noise_std": 3.0}, "train": {"epochs": 2}}))
    prep = Preprocessor(cfg.preprocess, ["x1", "x2", "colour"], ["species"], {"species": "classification"}).fit(train_rows)
    train, val = to_split(prep, train_rows, CPU), to_split(prep, val_rows, CPU)
    clean_train = train.X.clone()
    model = RecordInputs(build_model(len(prep.feature_names_), prep.output_sizes(), cfg.model, cfg.seed))
    fit(model, train, val, prep, cfg, CPU)

    assert torch.equal(train.X, clean_train)
    seen_training = torch.cat([X for training, X in model.seen if training])  # (2 epochs * 60, n_features)
    epoch_one = seen_training[:60]
    assert (epoch_one[:, :2] != clean_train[:, :2]).all()  # x1, x2: noisy
    assert torch.equal(epoch_one[:, 2:], clean_train[:, 2:])  # colour one-hot: untouched
    assert not torch.equal(epoch_one, seen_training[60:])  # fresh noise every epoch
    scored = [X for training, X in model.seen if not training]
    assert len(scored) == 2 and all(torch.equal(X, val.X) for X in scored)  # validation: clean, every epoch


# ---- SMOTE -------------------------------------------------------------------------------------
def test_smote_balances_class_counts_with_rows_between_same_class_rows():
    X, y = imbalanced_table({0: 60, 1: 12, 2: 8})
    X_over, y_over = oversample(X, y, k=5, seed=0, onehot=[slice(2, 5)])
    assert np.bincount(y_over).tolist() == [60, 60, 60]
    assert np.array_equal(X_over[: len(X)], X) and np.array_equal(y_over[: len(y)], y)  # originals kept, first
    assert X_over.dtype == np.float32 and y_over.dtype == np.int64
    for label in (1, 2):
        real = X[y == label, :2]
        synthetic = X_over[len(X):][y_over[len(y):] == label, :2]
        assert (synthetic >= real.min(axis=0)).all() and (synthetic <= real.max(axis=0)).all()
    onehot = X_over[:, 2:]
    assert set(np.unique(onehot)) == {0.0, 1.0} and (onehot.sum(axis=1) == 1).all()  # still one category per row


def test_smote_is_reproducible_from_its_seed():
    X, y = imbalanced_table({0: 30, 1: 10})
    first, second, other = (oversample(X, y, k=3, seed=seed)[0] for seed in (1, 1, 2))
    assert np.array_equal(first, second) and not np.array_equal(first, other)


def test_smote_with_too_small_a_class_suggests_a_smaller_k():
    X, y = imbalanced_table({0: 30, 1: 3})
    with pytest.raises(ConfigError, match=r"3 rows of class 'rare'.*augment.smote_k to at most 2"):
        oversample(X, y, k=5, seed=0, classes=["common", "rare"])


def test_smote_needs_a_single_classification_target():
    assert smote_target({"species": "classification"}) == "species"
    with pytest.raises(ConfigError, match="'price' is a regression target"):
        smote_target({"price": "regression"})
    with pytest.raises(ConfigError, match=r"2 targets: label \(classification\), salary \(regression\)"):
        smote_target({"label": "classification", "salary": "regression"})


def test_smote_with_a_regression_target_fails_before_any_run_directory_exists(tmp_path, regression_csv, config):
    runs = tmp_path / "runs"
    with pytest.raises(ConfigError, match="augment.smote needs a classification target"):
        dlrun.train(config({"path": str(regression_csv), "target": "price"}, augment={"smote": True}), runs)
    assert not runs.exists() or not any(runs.iterdir())


def test_train_with_smote_oversamples_the_training_split_only_and_records_it(tmp_path, config):
    path = tmp_path / "skewed.csv"
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=100), "colour": rng.choice(["red", "blue"], 100),
                          "label": ["common"] * 80 + ["rare"] * 20})
    frame.to_csv(path, index=False)
    run = dlrun.train(config({"path": str(path), "target": "label"}, augment={"smote": True, "smote_k": 3}), tmp_path / "runs")
    info = json.loads((run.run_dir / "run.json").read_text())
    counts = info["data"]["targets"]["label"]["class_counts"]  # the real training rows
    assert info["data"]["rows_added_by_smote"] == run.data_summary["rows_added_by_smote"] == counts["common"] - counts["rare"]
    assert info["data"]["rows"] == {"train": 70, "val": 15, "test": 15}
    assert len(pd.read_csv(run.run_dir / "predictions.csv")) == 15  # test rows are the real ones, not resampled


def test_same_seed_gives_identical_metrics_with_augmentation_on(tmp_path, classification_csv, config):
    data = {"path": str(classification_csv), "target": "species"}
    augmented = config(data, augment={"noise_std": 0.5, "mask_prob": 0.2, "smote": True, "smote_k": 2})
    first, second = dlrun.train(augmented, tmp_path / "a"), dlrun.train(augmented, tmp_path / "b")
    assert first.metrics == second.metrics
    history = [pd.read_csv(run.run_dir / "metrics.csv").drop(columns="seconds") for run in (first, second)]
    pd.testing.assert_frame_equal(*history)
    plain = dlrun.train(config(data), tmp_path / "c")
    assert plain.metrics != first.metrics  # the augmentation did take part



def test_a_resumed_run_continues_the_augmentation_draws_exactly(tmp_path):
    cfg = validate_config(merge(FAST, {"data": {"dataset": "synthetic", "target": "label", "synthetic": {"n_samples": 200}},
                                       "augment": {"noise_std": 0.3, "mask_prob": 0.2}, "train": {"epochs": 4}}))
    straight = dlrun.train(cfg, tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        dlrun.train(cfg, tmp_path / "b", callbacks=[InterruptAfter(2)])
    (run_dir,) = (tmp_path / "b").iterdir()
    assert resume(run_dir).metrics == straight.metrics

"""`check(cfg)` and `dlrun check`: the data summary, then one batch overfitted (or reported as a likely bug)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from dlrun.cli.commands import app
from dlrun.config.load import load_config
from dlrun.core.errors import ConfigError
from dlrun.probe.check import best_possible, check

from conftest import CONFIGS, make_classification_frame, run_cli_many


@pytest.fixture(scope="module")
def animals():
    """The shipped animals config, checked once on the CPU; the global RNG must come out as it went in."""
    rng_before = torch.get_rng_state()
    report = check(load_config(CONFIGS / "animals.yaml", device="cpu"))
    assert torch.equal(torch.get_rng_state(), rng_before)
    return report


def test_animals_batch_is_overfitted(animals):
    assert animals.passed and animals.loss_near_zero
    assert animals.n_rows == 16  # data.batch_size
    [result] = animals.targets
    assert (result.target, result.metric, result.value, result.needed) == ("type", "accuracy", 1.0, 1.0)
    assert animals.loss_start > 1.0 > 0.01 > animals.loss_end  # cross-entropy of 7 classes starts near ln 7
    assert animals.steps < animals.max_steps  # it stops once overfitted
    assert len(animals.losses) == animals.steps
    assert "overfitted" in animals.verdict and any("dlrun train" in line for line in animals.advice)


def test_report_carries_the_data_summary_and_says_dropout_is_off(animals):
    summary = animals.summary
    assert summary["rows"] == {"train": 69, "val": 16, "test": 16}
    assert summary["features_encoded"] == 16 and summary["unused_columns"] == ["name"]
    assert sum(summary["targets"]["type"]["class_counts"].values()) == 69
    assert animals.notes[0] == "dropout off (configured: 0.1)"
    assert animals.cfg.model.dropout == 0.0 and animals.cfg.data.task == {"type": "classification"}


def test_check_is_deterministic(make_config, classification_csv):
    cfg = load_config(make_config({"path": str(classification_csv), "target": "species"}))
    first, second = check(cfg, steps=100), check(cfg, steps=100)
    assert first.losses == second.losses and first.targets == second.targets


def test_small_regression_csv_is_overfitted(make_config, regression_csv):
    report = check(load_config(make_config({"path": str(regression_csv), "target": "price"})))
    assert report.passed, report
    [result] = report.targets
    assert result.metric == "r2" and result.value >= 0.99 and result.needed == pytest.approx(0.99)
    assert report.summary["targets"]["price"]["task"] == "regression"
    assert report.summary["missing_imputed_in_train"]  # the frame has gaps in size and city


def test_tiny_learning_rate_is_reported_as_not_overfitting(make_config, classification_csv):
    cfg = load_config(make_config({"path": str(classification_csv), "target": "species"}, optimizer={"lr": 1e-7}))
    report = check(cfg, steps=200)
    assert not report.passed and report.steps == 200
    [result] = report.targets
    assert result.value < 1.0 and result.needed == 1.0
    assert report.loss_end == pytest.approx(report.loss_start, rel=0.01)  # the numbers show it: nothing was learnt
    assert "not overfitted" in report.verdict
    assert "barely moved" in report.advice[0]
    assert any("optimizer.lr = 1e-07 is low for adamw" in line for line in report.advice)


def test_one_sigmoid_unit_is_reported_as_too_small():
    cfg = load_config(CONFIGS / "animals.yaml", ["model.hidden=[1]", "model.activation=sigmoid"], "cpu")
    report = check(cfg, steps=300)
    assert not report.passed and report.targets[0].value < 1.0 and report.loss_end > 0.5
    advice = " ".join(report.advice)
    assert "sigmoid saturates" in advice and "width 1" in advice and "suspect the data" in advice


def test_best_possible_counts_rows_with_identical_features():
    X = torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [2.0, 3.0]])  # three identical rows, one distinct
    assert best_possible(X, torch.tensor([0, 0, 1, 1]), classification=True) == 0.75  # one of the three must be wrong
    assert best_possible(X, torch.tensor([1, 1, 1, 0]), classification=True) == 1.0
    y = torch.tensor([1.0, 2.0, 3.0, 10.0])
    # the best prediction for the identical rows is their mean, 2: residuals -1, 0, 1 against a total of 50
    assert best_possible(X, y, classification=False) == pytest.approx(1 - 2 / 50)


def test_contradicting_duplicate_rows_lower_the_bar_and_are_named(tmp_path, make_config):
    frame = make_classification_frame(40)
    clash = frame.iloc[:4].assign(species=lambda f: f["species"].map({"cat": "dog", "dog": "bird", "bird": "cat"}))
    path = tmp_path / "clash.csv"
    pd.concat([frame, clash]).to_csv(path, index=False)
    cfg = load_config(make_config({"path": str(path), "target": "species", "split": {"train": 0.9, "val": 0.05, "test": 0.05}}))
    report = check(cfg, batch_rows=1000)  # every training row, so some clashing pairs are in the batch
    [result] = report.targets
    assert result.best_possible < 1.0 and result.needed == result.best_possible
    assert report.passed and result.value == pytest.approx(result.best_possible)
    assert any("identical features but a different species" in note for note in report.notes)


def test_steps_below_one_is_a_config_error(animals):
    with pytest.raises(ConfigError, match="--steps must be at least 1"):
        check(animals.cfg, steps=0)


def test_cli_check_exits_1_with_the_numbers_when_the_batch_is_not_overfitted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["check", str(CONFIGS / "animals.yaml"), "--device", "cpu", "--steps", "100", "--set", "optimizer.lr=1e-7"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "FAIL not overfitted after 100 steps" in result.stderr and "barely moved" in result.stderr
    assert "loss 1.9" in result.stderr and "needed" in result.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_cli_check_prints_summary_and_verdict_and_creates_no_run_directory(tmp_path):
    animals = str(CONFIGS / "animals.yaml")
    results = run_cli_many({
        "pass": (["check", animals, "--device", "cpu"], tmp_path),
        "bad": (["check", animals, "--set", "optimizer.lrr=0.1"], tmp_path),
    })
    passed, bad = results["pass"], results["bad"]
    assert passed.returncode == 0, passed.stderr
    for fragment in ("data summary", "train 69, val 16, test 16", "16 columns -> 16 after encoding", "mammal 29 (42%)",
                     "overfitting one batch", "100.00%", "dropout off", "PASS overfitted"):
        assert fragment in passed.stderr, fragment
    assert bad.returncode == 2 and "Error:" in bad.stderr and "did you mean 'lr'" in bad.stderr
    assert "Traceback" not in passed.stderr + bad.stderr
    assert not (tmp_path / "runs").exists() and not list(tmp_path.iterdir())

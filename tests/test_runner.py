"""The library twins: `dlrun.train(cfg) -> Run`, `dlrun.evaluate`, `dlrun.predict`, as a notebook would call them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import dlrun
from dlrun.config.load import load_config, validate_config
from dlrun.core.errors import ConfigError, DataError, DlrunError
from dlrun.training.state import Callback

from conftest import merge


@pytest.fixture
def config(make_config):
    """config(data, **sections) -> a fast Config, written as YAML and loaded the way the CLI loads it."""
    return lambda data, **sections: load_config(make_config(data, **sections))


def test_the_package_exposes_working_library_twins(tmp_path, make_config):
    # dlrun.train, evaluate and predict are exercised through the package name by the tests below.
    cfg = dlrun.load_config(make_config({"dataset": "animals"}, name="zoo"), ["optimizer.lr=0.5"])
    assert (cfg.name, cfg.data.dataset, cfg.optimizer.lr, cfg.train.epochs) == ("zoo", "animals", 0.5, 5)
    with pytest.raises(dlrun.DlrunError, match="missing.yaml"):
        dlrun.load_config(tmp_path / "missing.yaml")


def _noise_csv(path, n_rows: int = 80):
    """Features and a target with no relation between them: validation loss soon rises as the model overfits."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(n_rows, 4)), columns=["a", "b", "c", "d"])
    frame["y"] = rng.normal(size=n_rows)
    frame.to_csv(path, index=False)
    return path


def test_early_stopping_from_the_config_stops_the_run_and_records_why(tmp_path, config):
    data = {"path": str(_noise_csv(tmp_path / "noise.csv")), "target": "y"}
    sections = dict(model={"hidden": [32], "dropout": 0.0}, optimizer={"lr": 0.05}, train={"epochs": 60, "early_stopping": {"patience": 3}})
    run = dlrun.train(config(data, **sections), tmp_path / "stopped")
    assert run.epochs_run < 60 and run.best_epoch == run.epochs_run - 3
    assert run.stop_reason == f"early stopping: val_loss has not improved for 3 epochs (best epoch {run.best_epoch})"
    info = json.loads((run.run_dir / "run.json").read_text())
    assert (info["stop_reason"], info["epochs_run"], info["best_epoch"]) == (run.stop_reason, run.epochs_run, run.best_epoch)
    history = pd.read_csv(run.run_dir / "metrics.csv")
    assert len(history) == run.epochs_run and int(history["val_loss"].idxmin()) + 1 == run.best_epoch
    # The run serves the best epoch's weights, not the last epoch's.
    assert torch.load(run.run_dir / "checkpoints" / "best.pt", weights_only=True)["epoch"] == run.best_epoch
    val_rmse = dlrun.evaluate(run.run_dir, split="val").metrics["y"]["rmse"]
    assert val_rmse == pytest.approx(history["val_rmse"][run.best_epoch - 1], rel=1e-5)
    assert val_rmse != pytest.approx(history["val_rmse"].iloc[-1], rel=1e-5)

    unstopped = dlrun.train(config(data, **merge(sections, {"train": {"early_stopping": None}})), tmp_path / "all")
    assert unstopped.epochs_run == 60 and unstopped.best_epoch == 60 and unstopped.stop_reason == "ran all 60 epochs"


def test_regression_predictions_and_errors_are_in_the_targets_units(finished_runs):
    run_dir = finished_runs["regression"]
    rows = pd.read_csv(run_dir / "predictions.csv")
    rmse = float(np.sqrt(((rows["price_pred"] - rows["price"]) ** 2).mean()))
    assert json.loads((run_dir / "metrics.json").read_text())["test"]["price"]["rmse"] == pytest.approx(rmse, rel=1e-5)
    # euros: the predictions sit in the prices' range, far from the standardised values (mean 0, std 1) the model outputs
    assert rows["price"].min() * 0.5 < rows["price_pred"].mean() < rows["price"].max()


def test_train_writes_a_complete_run(tmp_path, classification_csv, config):
    run = dlrun.train(config({"path": str(classification_csv), "target": "species"}, name="pets"), tmp_path / "runs")
    assert run.run_dir.parent == tmp_path / "runs" and run.run_dir.name.endswith("-pets")
    info = json.loads((run.run_dir / "run.json").read_text())
    assert info["status"] == "completed" and info["seed"] == 0 and info["device"] == "cpu"
    assert info["started"] and info["ended"] and "torch" in info["versions"] and "git_commit" in info
    assert info["epochs_run"] == run.epochs_run == 5
    resolved = yaml.safe_load((run.run_dir / "config.yaml").read_text())
    assert resolved["data"]["task"] == {"species": "classification"}  # inferred values are written in
    assert run.metrics["test"]["species"].keys() == {"accuracy", "precision_macro", "recall_macro", "f1_macro", "auroc"}
    predictions = pd.read_csv(run.run_dir / "predictions.csv")
    proba = predictions[[f"species_proba_{name}" for name in ("bird", "cat", "dog")]]
    assert proba.sum(axis=1).to_numpy() == pytest.approx(1.0, abs=1e-5)
    assert set(predictions["species_pred"]) <= {"bird", "cat", "dog"}


def test_same_seed_gives_identical_metrics_even_with_dropout(tmp_path, regression_csv, config):
    cfg = config({"path": str(regression_csv), "target": "price"}, model={"hidden": [16], "dropout": 0.3})
    first, second = dlrun.train(cfg, tmp_path / "a"), dlrun.train(cfg, tmp_path / "b")
    assert first.metrics == second.metrics
    history = [pd.read_csv(run.run_dir / "metrics.csv").drop(columns="seconds") for run in (first, second)]
    pd.testing.assert_frame_equal(*history)


def test_train_leaves_the_global_generator_alone(tmp_path, regression_csv, config):
    before = torch.get_rng_state()
    dlrun.train(config({"path": str(regression_csv), "target": "price"}, model={"dropout": 0.2}), tmp_path)
    assert torch.equal(torch.get_rng_state(), before)


def test_train_restores_the_torch_thread_count(tmp_path, regression_csv, config):
    before = torch.get_num_threads()
    dlrun.train(config({"path": str(regression_csv), "target": "price"}, train={"epochs": 1, "threads": 1}), tmp_path)
    assert torch.get_num_threads() == before


def test_bad_data_raises_before_any_run_directory_exists(tmp_path, regression_csv, config):
    runs = tmp_path / "runs"
    with pytest.raises(DataError):
        dlrun.train(config({"path": str(regression_csv), "target": "cost"}), runs)
    assert not runs.exists() or not any(runs.iterdir())


def test_single_class_target_is_a_data_error_before_any_run_directory_exists(tmp_path, config):
    path = tmp_path / "one_class.csv"
    pd.DataFrame({"x": range(40), "y": ["spam"] * 40}).to_csv(path, index=False)
    runs = tmp_path / "runs"
    with pytest.raises(DataError, match="'y'"):
        dlrun.train(config({"path": str(path), "target": "y"}), runs)
    assert not runs.exists() or not any(runs.iterdir())


def test_runs_dir_that_is_a_file_is_a_user_error(tmp_path, regression_csv, config):
    not_a_dir = tmp_path / "runs"
    not_a_dir.write_text("I am a file")
    with pytest.raises(DlrunError, match="runs"):
        dlrun.train(config({"path": str(regression_csv), "target": "price"}), not_a_dir)


def test_unknown_early_stopping_metric_is_a_config_error_before_the_run(tmp_path, regression_csv, config):
    runs = tmp_path / "runs"
    with pytest.raises(ConfigError, match="val_accuracy"):
        dlrun.train(config({"path": str(regression_csv), "target": "price"},
                           train={"early_stopping": {"metric": "val_accuracy"}}), runs)
    assert not runs.exists() or not any(runs.iterdir())


def test_a_run_that_fails_after_starting_is_marked_failed(tmp_path, regression_csv, config):
    class Explode(Callback):
        def on_epoch_end(self, state, row):
            if state.epoch == 2:
                raise RuntimeError("boom at epoch 2")

    runs = tmp_path / "runs"
    with pytest.raises(RuntimeError, match="boom"):
        dlrun.train(config({"path": str(regression_csv), "target": "price"}), runs, callbacks=[Explode()])
    (run_dir,) = runs.iterdir()
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "failed" and "boom at epoch 2" in info["error"] and info["ended"]
    assert len(pd.read_csv(run_dir / "metrics.csv")) == 2  # the history up to the failure is kept


def test_evaluate_matches_the_test_metrics_of_training(tmp_path, regression_csv, config):
    run = dlrun.train(config({"path": str(regression_csv), "target": "price"}), tmp_path)
    result = dlrun.evaluate(run.run_dir)
    assert result.metrics["price"] == pytest.approx(run.metrics["test"]["price"], rel=1e-6)
    assert json.loads(result.output.read_text())["metrics"]["price"] == pytest.approx(run.metrics["test"]["price"], rel=1e-6)
    assert dlrun.evaluate(run.run_dir, split="val").metrics["price"] == pytest.approx(run.metrics["val"]["price"], rel=1e-6)


def test_evaluate_rejects_an_unknown_split(tmp_path):
    with pytest.raises(ConfigError, match="--split"):
        dlrun.evaluate(tmp_path, split="holdout")


def test_predict_writes_beside_the_input_by_default(tmp_path, classification_csv, config):
    run = dlrun.train(config({"path": str(classification_csv), "target": "species"}), tmp_path / "runs")
    rows = pd.read_csv(classification_csv).drop(columns="species").head(5)
    rows.to_csv(tmp_path / "new.csv", index=False)
    output = dlrun.predict(run.run_dir, tmp_path / "new.csv").output
    assert output == tmp_path / "new_predictions.csv"
    result = pd.read_csv(output)
    assert len(result) == 5 and set(result["species_pred"]) <= {"bird", "cat", "dog"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_cuda_matches_the_cpu_pipeline(tmp_path, regression_csv, config):
    run = dlrun.train(config({"path": str(regression_csv), "target": "price"}, device="cuda"), tmp_path)
    assert json.loads((run.run_dir / "run.json").read_text())["device"].startswith("cuda")
    assert dlrun.evaluate(run.run_dir, device="cuda").metrics["price"] == pytest.approx(run.metrics["test"]["price"], rel=1e-4)


@pytest.mark.parametrize("setting", [{"label_smoothing": 0.1}, {"class_weights": "balanced"}])
def test_classification_only_settings_on_a_regression_target_are_config_errors(tmp_path, setting):
    cfg = validate_config({"data": {"dataset": "salary"}, "train": setting})
    with pytest.raises(ConfigError, match=f"train.{next(iter(setting))}"):
        dlrun.train(cfg, tmp_path / "runs")
    assert not (tmp_path / "runs").exists()

"""The run directory: unique names, checkpoints loaded with weights_only, and reopening a finished run."""

from __future__ import annotations

import datetime as dt
import shutil

import pandas as pd
import pytest
import torch

import dlrun.run.directory as artifacts
from dlrun.run.directory import create_run_dir, open_run
from dlrun.training.checkpoint import load_checkpoint, save_checkpoint
from dlrun.config.schema import ModelConfig
from dlrun.config.load import validate_config
from dlrun.core.errors import ConfigError, RunError
from dlrun.run.outputs import prediction_frame
from dlrun.model.mlp import build_model
from dlrun.run.runner import train
from dlrun.training.state import TrainState
from dlrun.model.forward import forward_split

from conftest import FAST, merge


class FrozenClock(dt.datetime):
    """datetime whose now() never moves: every run directory is created in the same second."""

    @classmethod
    def now(cls, tz=None):
        return cls(2026, 1, 2, 3, 4, 5, tzinfo=tz)


def test_run_dirs_created_in_the_same_second_get_unique_names(tmp_path, monkeypatch):
    monkeypatch.setattr(artifacts, "datetime", FrozenClock)
    created = [create_run_dir(tmp_path / "runs", "exp") for _ in range(3)]
    assert [path.name for path in created] == ["20260102-030405-exp", "20260102-030405-exp-2", "20260102-030405-exp-3"]
    assert all((path / "checkpoints").is_dir() for path in created)


def test_run_dir_name_has_timestamp_and_name(tmp_path):
    run_dir = create_run_dir(tmp_path, "salary")
    stamp, name = run_dir.name[:15], run_dir.name[16:]
    assert dt.datetime.strptime(stamp, "%Y%m%d-%H%M%S") and name == "salary"


def tiny_state(seed: int = 0) -> TrainState:
    model = build_model(4, {"y": 3, "z": 1}, ModelConfig(hidden=[8]), seed=seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(5, 4))["y"].sum().backward()
    optimizer.step()  # so the optimizer has state worth saving
    return TrainState(model, optimizer, "val_loss", False, epoch=7, best_value=0.25, best_epoch=5)


def test_checkpoint_round_trips_with_weights_only(tmp_path):
    state = tiny_state()
    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint(path, state, include_optimizer=True)
    raw = torch.load(path, weights_only=True)  # the file is plain tensors and values: no pickle of classes
    assert (raw["epoch"], raw["best_epoch"], raw["best_value"], raw["monitor"]) == (7, 5, 0.25, "val_loss")
    checkpoint = load_checkpoint(path)
    fresh = build_model(4, {"y": 3, "z": 1}, ModelConfig(hidden=[8]), seed=99)
    fresh.load_state_dict(checkpoint["model"])
    for name, tensor in state.model.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], tensor), name
    optimizer = torch.optim.Adam(fresh.parameters(), lr=0.01)
    optimizer.load_state_dict(checkpoint["optimizer"])
    assert optimizer.state_dict()["state"].keys() == state.optimizer.state_dict()["state"].keys()
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # written atomically, no temp left


def test_best_checkpoint_leaves_out_the_optimizer(tmp_path):
    save_checkpoint(tmp_path / "best.pt", tiny_state(), include_optimizer=False)
    assert "optimizer" not in load_checkpoint(tmp_path / "best.pt")


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: path.write_bytes(b"this is not a checkpoint"),
        lambda path: path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2]),
        lambda path: path.write_bytes(b""),
        lambda path: torch.save({"weights": torch.zeros(2)}, path),
        lambda path: torch.save([1, 2, 3], path),
    ],
    ids=["garbage", "truncated", "empty", "foreign-dict", "not-a-dict"],
)
def test_corrupted_checkpoint_raises_run_error(tmp_path, damage):
    path = tmp_path / "best.pt"
    save_checkpoint(path, tiny_state(), include_optimizer=False)
    damage(path)
    with pytest.raises(RunError, match="best.pt"):
        load_checkpoint(path)


def test_missing_checkpoint_raises_run_error(tmp_path):
    with pytest.raises(RunError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")


# ---- reopening a finished run ------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A tiny two-target run trained in-process (classification + regression)."""
    cfg = validate_config(merge(FAST, {"name": "tiny", "data": {"dataset": "synthetic", "synthetic": {"n_samples": 200, "n_features": 3}},
                                       "train": {"epochs": 3}}))
    return train(cfg, tmp_path_factory.mktemp("runs"))


def copy_run(run, tmp_path):
    target = tmp_path / run.run_dir.name
    shutil.copytree(run.run_dir, target)
    return target


def test_reopened_run_gives_identical_predictions(finished_run):
    fitted = open_run(finished_run.run_dir)
    saved = pd.read_csv(finished_run.run_dir / "predictions.csv")
    X = torch.from_numpy(fitted.prep.transform_features(saved))
    again = prediction_frame(fitted.prep, forward_split(fitted.model, X))
    assert (again["label_pred"].to_numpy() == saved["label_pred"].to_numpy()).all()
    pd.testing.assert_series_equal(again["salary_pred"], saved["salary_pred"], check_exact=False, rtol=1e-9)
    pd.testing.assert_series_equal(again["label_proba_1"].astype(float), saved["label_proba_1"], check_exact=False, rtol=1e-6)


def test_reopened_model_is_in_eval_mode_on_cpu(finished_run):
    fitted = open_run(finished_run.run_dir)
    assert not fitted.model.training and fitted.device == torch.device("cpu")


def test_open_run_on_a_non_run_directory_names_what_is_missing(tmp_path):
    with pytest.raises(RunError, match="config.yaml is missing"):
        open_run(tmp_path)
    with pytest.raises(RunError, match="not found"):
        open_run(tmp_path / "nope")


@pytest.mark.parametrize("missing", ["config.yaml", "preprocess.json", "checkpoints/best.pt"])
def test_open_run_without_a_required_file_names_it(finished_run, tmp_path, missing):
    run_dir = copy_run(finished_run, tmp_path)
    (run_dir / missing).unlink()
    with pytest.raises(RunError, match=missing):
        open_run(run_dir)


def test_open_run_with_corrupted_best_checkpoint_raises_run_error(finished_run, tmp_path):
    run_dir = copy_run(finished_run, tmp_path)
    (run_dir / "checkpoints" / "best.pt").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(RunError, match="best.pt"):
        open_run(run_dir)


def test_open_run_with_damaged_preprocess_json_raises_run_error(finished_run, tmp_path):
    run_dir = copy_run(finished_run, tmp_path)
    (run_dir / "preprocess.json").write_text("{ not json")
    with pytest.raises(RunError, match="preprocess.json"):
        open_run(run_dir)
    (run_dir / "preprocess.json").write_text('{"version": 1}')
    with pytest.raises(RunError, match="preprocess.json"):
        open_run(run_dir)


def test_open_run_with_a_checkpoint_of_another_shape_raises_run_error(finished_run, tmp_path):
    run_dir = copy_run(finished_run, tmp_path)
    other = tiny_state()  # 4 features, different widths
    save_checkpoint(run_dir / "checkpoints" / "best.pt", other, include_optimizer=False)
    with pytest.raises(RunError, match="does not match"):
        open_run(run_dir)


def test_open_run_with_damaged_config_is_a_user_error(finished_run, tmp_path):
    run_dir = copy_run(finished_run, tmp_path)
    (run_dir / "config.yaml").write_text("data: [unclosed\n")
    with pytest.raises(RunError, match="config.yaml"):
        open_run(run_dir)
    (run_dir / "config.yaml").write_text("data: {dataset: synthetic}\nbogus: 1\n")
    with pytest.raises(ConfigError, match="bogus"):
        open_run(run_dir)

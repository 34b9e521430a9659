"""Transfer learning and fine-tuning: init_from, freeze and a separate trunk learning rate."""

from __future__ import annotations

import pytest
import torch

from dlrun.config.load import validate_config
from dlrun.core.errors import ConfigError
from dlrun.model.mlp import build_model
from dlrun.config.schema import ModelConfig
from dlrun.run.runner import train
from dlrun.training.transfer import freeze, load_matching_weights
from dlrun.run.layout import BEST_CHECKPOINT
from dlrun.training.step import make_optimizer

from conftest import FAST, merge

ANIMALS = {"dataset": "animals"}


def _train(tmp_path, **sections):
    return train(validate_config(merge({**FAST, "data": ANIMALS}, sections)), tmp_path / "runs")


def test_init_from_a_run_loads_its_weights(tmp_path):
    source = _train(tmp_path)
    run = _train(tmp_path, train={"epochs": 1, "init_from": str(source.run_dir), "freeze": [0, 1]},
                 optimizer={"lr": 1e-9})
    before = torch.load(source.run_dir / "checkpoints" / "best.pt", weights_only=True)["model"]
    after = torch.load(run.run_dir / "checkpoints" / "best.pt", weights_only=True)["model"]
    assert torch.equal(before["trunk.0.weight"], after["trunk.0.weight"])  # loaded, then frozen
    assert any("loaded" in note for note in run.notes)


def test_a_head_of_another_shape_is_reinitialised_with_a_note(tmp_path):
    source = _train(tmp_path)
    model = build_model(16, {"type": 3}, ModelConfig(**FAST["model"]), seed=1)  # 3 classes instead of 7
    notes = load_matching_weights(model, str(source.run_dir), BEST_CHECKPOINT)
    saved = torch.load(source.run_dir / "checkpoints" / "best.pt", weights_only=True)["model"]
    assert torch.equal(model.state_dict()["trunk.0.weight"], saved["trunk.0.weight"])
    assert any("head 'type'" in note and "re-initialised" in note and "(7, 8)" in note for note in notes)


def test_frozen_layers_do_not_change_and_others_do(tmp_path):
    source = _train(tmp_path)
    run = _train(tmp_path, train={"init_from": str(source.run_dir), "freeze": [0], "epochs": 3, "early_stopping": None},
                 optimizer={"lr": 0.05})
    before = torch.load(source.run_dir / "checkpoints" / "best.pt", weights_only=True)["model"]
    after = torch.load(run.run_dir / "checkpoints" / "best.pt", weights_only=True)["model"]
    assert torch.equal(before["trunk.0.weight"], after["trunk.0.weight"])
    assert not torch.equal(before["trunk.2.weight"], after["trunk.2.weight"])


def test_freeze_by_name_and_bad_specs():
    model = build_model(4, {"y": 1}, ModelConfig(hidden=[8, 8], dropout=0), seed=0)
    freeze(model, ["trunk.2"])
    assert not model.trunk[2].weight.requires_grad and model.trunk[0].weight.requires_grad
    with pytest.raises(ConfigError, match="layer index 5"):
        freeze(model, [5])
    with pytest.raises(ConfigError, match="names no parameters"):
        freeze(model, ["trunk.9"])


def test_trunk_lr_gives_the_trunk_its_own_learning_rate():
    model = build_model(4, {"y": 1}, ModelConfig(hidden=[8], dropout=0), seed=0)
    cfg = validate_config({"data": ANIMALS, "optimizer": {"lr": 0.01}})
    optimizer = make_optimizer(model, cfg.optimizer, torch.device("cpu"), trunk_lr=0.001)
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert lr_of[id(model.trunk[0].weight)] == 0.001 and lr_of[id(model.heads[0].weight)] == 0.01


def test_init_from_a_missing_run_is_a_config_error_before_any_run_dir(tmp_path):
    with pytest.raises(ConfigError, match="train.init_from"):
        _train(tmp_path, train={"init_from": str(tmp_path / "nope")})
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())

"""diagnostics.py: the per-epoch numbers are right, leave training untouched, and become plain-words warnings."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest
import torch

from dlrun.config.load import validate_config
from dlrun.training.diagnostics import COLUMNS, Diagnostics, diagnose, layer_weights, relu_activations
from dlrun.training.losses import Criterion
from dlrun.run.runner import prepare
from dlrun.training.loop import fit

from conftest import FAST, merge, run_cli, write_config


def prepared(csv, **sections):
    data = {"path": str(csv), "target": "price"}
    return prepare(validate_config(merge(FAST, {"data": data, "train": {"epochs": 4, "early_stopping": None}, **sections})))


def diagnostics_for(ready, path):
    train = ready.splits["train"]
    return Diagnostics(path, train.X, train.y, ready.splits["val"].X, Criterion(ready.prep, ready.cfg.train, train.y),
                       seed=ready.cfg.seed)


def test_training_results_are_identical_with_and_without_diagnostics(regression_csv, tmp_path):
    sections = {"model": {"hidden": [16, 8], "dropout": 0.2, "norm": "batch"}}
    plain, watched = prepared(regression_csv, **sections), prepared(regression_csv, **sections)
    torch.manual_seed(0)
    state = fit(plain.model, plain.splits["train"], plain.splits["val"], plain.prep, plain.cfg, plain.device)
    torch.manual_seed(0)
    watched_state = fit(watched.model, watched.splits["train"], watched.splits["val"], watched.prep, watched.cfg,
                        watched.device, [diagnostics_for(watched, tmp_path / "diagnostics.csv")])
    drop_seconds = lambda history: [{k: v for k, v in row.items() if k != "seconds"} for row in history]
    assert drop_seconds(state.history) == drop_seconds(watched_state.history)
    for name, tensor in plain.model.state_dict().items():
        assert torch.equal(tensor, watched.model.state_dict()[name]), name


def test_diagnostics_csv_has_one_row_per_epoch_and_layer_with_true_norms(regression_csv, tmp_path):
    ready = prepared(regression_csv)
    fit(ready.model, ready.splits["train"], ready.splits["val"], ready.prep, ready.cfg, ready.device,
        [diagnostics_for(ready, tmp_path / "diagnostics.csv")])
    frame = pd.read_csv(tmp_path / "diagnostics.csv")
    assert list(frame.columns) == COLUMNS
    assert list(frame["layer"]) == ["layer 1", "layer 2", "head price"] * 4 and list(frame["epoch"]) == [1] * 3 + [2] * 3 + [3] * 3 + [4] * 3
    last = frame[frame["epoch"] == 4].set_index("layer")
    # without early stopping the last epoch's weights are the ones kept
    assert last.loc["layer 1", "weight_norm"] == pytest.approx(float(ready.model.trunk[0].weight.detach().norm()), rel=1e-6)
    assert (frame["grad_norm"] > 0).all() and (frame["update_ratio"] > 0).all()
    assert frame.loc[frame["layer"] == "head price", "dead_fraction"].isna().all()  # heads have no activation
    assert frame.loc[frame["layer"] != "head price", "dead_fraction"].between(0, 1).all()


def test_gradient_norms_match_a_plain_backward_pass(regression_csv, tmp_path):
    ready = prepared(regression_csv)
    callback = diagnostics_for(ready, tmp_path / "d.csv")
    state = type("State", (), {"model": ready.model, "epoch": 1})()
    callback.on_epoch_begin(state)
    sentinel = {name: torch.full_like(p, 7.0) for name, p in ready.model.named_parameters()}
    for name, p in ready.model.named_parameters():
        p.grad = sentinel[name]
    callback.on_epoch_end(state, {})
    for name, p in ready.model.named_parameters():  # the training step's gradients are left exactly as they were
        assert p.grad is sentinel[name]
    ready.model.eval()
    ready.model.zero_grad()
    callback.loss(ready.model(callback.train_X), callback.train_y).backward()
    rows = {row["layer"]: row for row in callback.rows}
    assert rows["layer 1"]["grad_norm"] == pytest.approx(float(ready.model.trunk[0].weight.grad.norm()), rel=1e-5)
    assert rows["layer 1"]["update_ratio"] == 0.0  # no step was taken since on_epoch_begin


def test_dead_units_are_counted_on_the_validation_batch(regression_csv, tmp_path):
    # without the missing indicator of `size`: with it, one more unit happens to be dead at initialisation
    ready = prepared(regression_csv, preprocess={"missing_indicators": False})
    with torch.no_grad():
        ready.model.trunk[0].bias[:12] = -1e6  # 12 of 16 first-layer units can never fire
    callback = diagnostics_for(ready, tmp_path / "d.csv")
    state = type("State", (), {"model": ready.model, "epoch": 1})()
    callback.on_epoch_begin(state)
    callback.on_epoch_end(state, {})
    frame = pd.read_csv(tmp_path / "d.csv")
    assert frame.loc[frame["layer"] == "layer 1", "dead_fraction"].item() == pytest.approx(0.75)
    assert diagnose(frame, "relu")[0] == "layer 1: 75% of ReLU units never fire; try leaky_relu or a smaller learning rate"


def test_a_small_validation_split_is_topped_up_with_training_rows_for_dead_units(tmp_path):
    train_X, val_X = torch.arange(1000.0).reshape(500, 2), -torch.ones(3, 2)
    callback = Diagnostics(tmp_path / "d.csv", train_X, {"y": torch.zeros(500, 1)}, val_X, lambda out, y: out.sum(), seed=0)
    assert len(callback.val_X) == 256 and (callback.val_X[:3] == -1).all()  # every validation row, then training rows
    assert set(callback.val_X[3:, 0].tolist()) <= set(train_X[:, 0].tolist())
    full = Diagnostics(tmp_path / "d.csv", train_X, {"y": torch.zeros(500, 1)}, train_X, lambda out, y: out.sum(), seed=0)
    assert torch.equal(full.val_X, train_X[:256])  # enough validation rows: validation rows only


def test_layers_are_named_trunk_first_then_heads(regression_csv):
    model = prepared(regression_csv, model={"hidden": [8, 8, 4], "norm": "layer", "activation": "leaky_relu"}).model
    assert list(layer_weights(model)) == ["layer 1", "layer 2", "layer 3", "head price"]
    assert list(relu_activations(model)) == ["layer 1", "layer 2", "layer 3"]
    assert relu_activations(prepared(regression_csv, model={"activation": "tanh"}).model) == {}


def test_diagnostics_survive_a_resume_through_their_state():
    callback = Diagnostics.__new__(Diagnostics)
    callback.load_state_dict({"rows": [{"epoch": 1, "layer": "layer 1", "grad_norm": 0.1}]})
    assert callback.state_dict()["rows"][0]["grad_norm"] == 0.1


def frame_of(**per_layer):
    """A diagnostics frame for 3 epochs from {layer: (grad_norm, dead_fraction)}."""
    rows = [{"epoch": e, "layer": layer, "grad_norm": grad, "weight_norm": 1.0, "update_ratio": 0.01, "dead_fraction": dead}
            for e in (1, 2, 3) for layer, (grad, dead) in per_layer.items()]
    return pd.DataFrame(rows, columns=COLUMNS)


def test_healthy_training_gets_no_warning():
    assert diagnose(frame_of(**{"layer 1": (0.1, 0.05), "layer 2": (0.3, 0.1), "head y": (0.5, math.nan)})) == []


def test_vanishing_gradients_are_named():
    (warning,) = diagnose(frame_of(**{"layer 1": (1e-7, 0.0), "layer 2": (1e-3, 0.0), "head y": (0.5, math.nan)}), "sigmoid")
    assert warning.startswith("gradients vanish: layer 1 gets gradients 1e+04 times smaller") and "leaky_relu" in warning


def test_exploding_and_non_finite_gradients_are_named():
    (big,) = diagnose(frame_of(**{"layer 1": (5e4, 0.0), "head y": (1.0, math.nan)}))
    assert big == "gradients explode: layer 1 has a gradient norm of 5e+04 at epoch 1; lower optimizer.lr or set train.grad_clip"
    (broken,) = diagnose(frame_of(**{"layer 1": (math.inf, 0.0), "head y": (1.0, math.nan)}))
    assert broken.startswith("gradients exploded: layer 1 has a non-finite gradient or weight at epoch 1")


def test_dead_relus_in_other_activations_get_other_advice():
    (warning,) = diagnose(frame_of(**{"layer 1": (0.1, 0.9), "head y": (0.5, math.nan)}), "elu")
    assert warning == "layer 1: 90% of elu units never fire; try a smaller learning rate"


def test_train_prints_a_warning_when_relus_die(tmp_path, regression_csv):
    config = write_config(tmp_path / "c.yaml", {"path": str(regression_csv), "target": "price"}, optimizer={"lr": 1.0}, report=True)
    result = run_cli("train", config, "--runs-dir", tmp_path / "runs")
    assert result.returncode == 0, result.stderr
    warning = re.search(r"warning: (layer \d: \d+% of ReLU units never fire); try leaky_relu or a smaller learning rate",
                        result.stderr)
    assert warning, result.stderr
    run_dir = result.stdout.strip().splitlines()[-1]
    assert warning[1] in (tmp_path / "runs" / run_dir.split("/")[-1] / "report.html").read_text()


def test_a_resumed_run_keeps_and_continues_its_diagnostics(tmp_path, regression_csv):
    from conftest import InterruptAfter
    from dlrun.run.runner import resume, train

    cfg = validate_config(merge(FAST, {"data": {"path": str(regression_csv), "target": "price"},
                                       "model": {"dropout": 0.2}, "train": {"epochs": 6, "early_stopping": None}}))
    straight = train(cfg, tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "b", callbacks=[InterruptAfter(3)])
    (interrupted,) = (tmp_path / "b").iterdir()
    resumed = resume(interrupted)
    expected = pd.read_csv(straight.run_dir / "diagnostics.csv")
    pd.testing.assert_frame_equal(pd.read_csv(resumed.run_dir / "diagnostics.csv"), expected)
    assert list(expected["epoch"].unique()) == [1, 2, 3, 4, 5, 6]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_diagnostics_on_the_gpu_match_the_cpu(regression_csv, tmp_path):
    values = {}
    for device in ("cpu", "cuda"):
        ready = prepared(regression_csv, device=device)
        fit(ready.model, ready.splits["train"], ready.splits["val"], ready.prep, ready.cfg, ready.device,
            [diagnostics_for(ready, tmp_path / f"{device}.csv")])
        values[device] = pd.read_csv(tmp_path / f"{device}.csv")
    assert list(values["cuda"]["layer"]) == list(values["cpu"]["layer"])
    pd.testing.assert_series_equal(values["cuda"]["weight_norm"], values["cpu"]["weight_norm"], rtol=1e-3)


def test_a_frozen_layer_has_no_gradient_and_no_warning(regression_csv, tmp_path):
    ready = prepared(regression_csv, train={"epochs": 2, "early_stopping": None, "freeze": [0]})
    from dlrun.training.transfer import freeze

    freeze(ready.model, ready.cfg.train.freeze)
    fit(ready.model, ready.splits["train"], ready.splits["val"], ready.prep, ready.cfg, ready.device,
        [diagnostics_for(ready, tmp_path / "d.csv")])
    frame = pd.read_csv(tmp_path / "d.csv")
    layer1 = frame[frame["layer"] == "layer 1"]
    assert layer1["grad_norm"].isna().all() and (layer1["update_ratio"] == 0).all()
    assert diagnose(frame) == []
    nan_weights = frame.assign(weight_norm=[math.nan] + list(frame["weight_norm"][1:]))
    assert diagnose(nan_weights)[0].startswith("gradients exploded: layer 1 has a non-finite gradient or weight at epoch 1")


def test_the_diagnostic_batch_is_drawn_from_the_runs_seed(tmp_path):
    train_X = torch.arange(1000.0).reshape(500, 2)

    def batch(seed):
        return Diagnostics(tmp_path / "d.csv", train_X, {"y": torch.zeros(500, 1)}, train_X, lambda out, y: out.sum(),
                           seed=seed).train_X

    assert torch.equal(batch(3), batch(3))  # reproducible from the seed
    assert not torch.equal(batch(3), batch(4))  # and not the same batch for every run

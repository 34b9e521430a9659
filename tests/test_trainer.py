"""Stage 4: the training loop: it learns, stops early with the best weights, and is reproducible on CPU."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from dlrun.config.schema import ModelConfig, OptimizerConfig, SchedulerConfig, TrainConfig
from dlrun.config.load import validate_config
from dlrun.data.tensors import to_split
from dlrun.model.mlp import build_model
from dlrun.data.preprocess import Preprocessor
from dlrun.training.state import Callback
from dlrun.training.losses import Criterion, balanced_class_weights
from dlrun.training.schedule import LRSchedule
from dlrun.training.loop import fit
from dlrun.training.step import make_optimizer

from conftest import FAST, merge

CPU = torch.device("cpu")


def random_frame(n_rows: int, seed: int, n_features: int = 5) -> pd.DataFrame:
    """Noise features and labels with no relation to them: anything learnt about train is overfitting."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n_rows, n_features)), columns=[f"x{i}" for i in range(n_features)])
    frame["y"] = rng.choice(["a", "b", "c"], n_rows)
    frame["z"] = rng.normal(100, 20, n_rows)
    return frame


def setup(train_rows: pd.DataFrame, val_rows: pd.DataFrame, targets=("y",), **sections):
    """Config, preprocessor, model and tensor splits, as the runner builds them."""
    cfg = validate_config(merge(FAST, {"data": {"dataset": "synthetic", "batch_size": 8}, **sections}))
    features = [column for column in train_rows.columns if column.startswith("x")]
    tasks = {"y": "classification", "z": "regression"}
    prep = Preprocessor(cfg.preprocess, features, list(targets), {t: tasks[t] for t in targets}).fit(train_rows)
    model = build_model(len(prep.feature_names_), prep.output_sizes(), cfg.model, cfg.seed)
    return cfg, prep, model, to_split(prep, train_rows, CPU), to_split(prep, val_rows, CPU)


def weights(model) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def differing(a, b) -> list[str]:
    """Names of the tensors that differ between two state dicts (empty: the same weights)."""
    assert a.keys() == b.keys()
    return [name for name in a if not torch.equal(a[name], b[name])]


class RecordWeights(Callback):
    """Keeps a copy of the weights at the end of every epoch, and the hooks called."""

    def __init__(self):
        self.by_epoch: dict[int, dict[str, torch.Tensor]] = {}
        self.calls: list[str] = []

    def on_train_begin(self, state):
        self.calls.append("begin")

    def on_epoch_end(self, state, row):
        self.calls.append(f"epoch{state.epoch}")
        self.by_epoch[state.epoch] = weights(state.model)

    def on_train_end(self, state):
        self.calls.append("end")


def without_seconds(history):
    return [{key: value for key, value in row.items() if key != "seconds"} for row in history]


@pytest.mark.parametrize("target", ["y", "z"])
def test_tiny_model_overfits_a_tiny_batch(target):
    frame = random_frame(8, seed=0)
    cfg, prep, model, train, val = setup(
        frame, frame, targets=(target,), model={"hidden": [32, 32], "dropout": 0.0},
        optimizer={"name": "adam", "lr": 0.05, "weight_decay": 0.0}, train={"epochs": 40, "early_stopping": None},
    )
    state = fit(model, train, val, prep, cfg, CPU)
    assert state.history[0]["train_loss"] > 0.5
    assert state.history[-1]["train_loss"] < 0.02


def test_history_records_losses_metrics_lr_and_seconds():
    cfg, prep, model, train, val = setup(random_frame(40, 0), random_frame(20, 1), targets=("y", "z"),
                                         train={"epochs": 3})
    state = fit(model, train, val, prep, cfg, CPU)
    assert [row["epoch"] for row in state.history] == [1, 2, 3]
    row = state.history[-1]
    assert {"train_loss", "val_loss", "lr", "seconds", "val_y_accuracy", "val_y_auroc", "val_z_mae", "val_z_r2"} <= set(row)
    assert row["lr"] == pytest.approx(0.01) and row["seconds"] >= 0
    assert all(isinstance(value, (int, float)) for value in row.values())


def test_early_stopping_stops_and_restores_best_weights():
    recorder = RecordWeights()
    cfg, prep, model, train, val = setup(
        random_frame(40, 0), random_frame(40, 1), model={"hidden": [64, 64], "dropout": 0.0},
        train={"epochs": 300, "early_stopping": {"patience": 5}},
    )
    state = fit(model, train, val, prep, cfg, CPU, [recorder])  # train.early_stopping alone stops it
    epochs_run = len(state.history)
    assert epochs_run < 300 and state.stop
    assert state.stop_reason == f"early stopping: val_loss has not improved for 5 epochs (best epoch {state.best_epoch})"
    assert state.best_epoch < epochs_run
    assert state.best_epoch == epochs_run - 5
    val_losses = [row["val_loss"] for row in state.history]
    assert state.best_epoch == int(np.argmin(val_losses)) + 1
    assert state.best_value == pytest.approx(min(val_losses))
    assert not differing(weights(model), state.best_state)
    assert not differing(weights(model), recorder.by_epoch[state.best_epoch])
    assert differing(weights(model), recorder.by_epoch[epochs_run])


def test_early_stopping_on_a_maximised_metric_keeps_the_highest():
    cfg, prep, model, train, val = setup(
        random_frame(40, 0), random_frame(40, 1), model={"hidden": [64, 64], "dropout": 0.0},
        train={"epochs": 60, "early_stopping": {"patience": 8, "metric": "val_f1_macro"}},
    )
    state = fit(model, train, val, prep, cfg, CPU)
    assert state.maximise and len(state.history) < 60
    scores = [row["val_f1_macro"] for row in state.history]
    assert state.best_value == max(scores) and state.best_epoch == scores.index(max(scores)) + 1


def test_without_early_stopping_every_epoch_runs_and_the_last_weights_are_kept():
    # Documented for train.early_stopping: "Set to null to train all epochs (the last epoch is kept)."
    recorder = RecordWeights()
    cfg, prep, model, train, val = setup(
        random_frame(40, 0), random_frame(40, 1), model={"hidden": [64, 64], "dropout": 0.0},
        train={"epochs": 30, "early_stopping": None},
    )
    state = fit(model, train, val, prep, cfg, CPU, [recorder])
    assert len(state.history) == 30
    val_losses = [row["val_loss"] for row in state.history]
    assert int(np.argmin(val_losses)) + 1 < 30  # the data overfits, so the last epoch is not the best by val_loss
    assert not differing(weights(model), recorder.by_epoch[30])


def test_same_seed_gives_identical_history_on_cpu():
    def history(seed: int):
        cfg, prep, model, train, val = setup(random_frame(64, 0), random_frame(32, 1), targets=("y", "z"), seed=seed,
                                             train={"epochs": 6})
        return without_seconds(fit(model, train, val, prep, cfg, CPU).history), weights(model)

    (first, first_weights), (again, again_weights), (other, _) = history(3), history(3), history(4)
    assert first == again
    assert not differing(first_weights, again_weights)
    assert first != other


def test_shuffle_order_comes_from_the_seed_not_the_global_generator():
    def history():
        cfg, prep, model, train, val = setup(random_frame(64, 0), random_frame(32, 1), train={"epochs": 4})
        return without_seconds(fit(model, train, val, prep, cfg, CPU).history)

    torch.manual_seed(1)
    first = history()
    torch.manual_seed(2)
    assert history() == first


# Each optimizer choice, checked step by step against its update rule written out below (the reference answer).
OPTIMIZERS = {
    "sgd": {"name": "sgd", "lr": 0.1, "momentum": 0.0, "weight_decay": 0.01},
    "sgd_momentum": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.01},
    "sgd_nesterov": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
    "adam": {"name": "adam", "lr": 0.01, "weight_decay": 0.1},
    "adamw": {"name": "adamw", "lr": 0.01, "weight_decay": 0.1},
    "rmsprop": {"name": "rmsprop", "lr": 0.01, "momentum": 0.0, "alpha": 0.9, "weight_decay": 0.01},
    "rmsprop_momentum": {"name": "rmsprop", "lr": 0.01, "momentum": 0.5, "alpha": 0.9, "weight_decay": 0.01},
}


def reference_update(options: dict, p: torch.Tensor, g: torch.Tensor, state: dict, t: int) -> torch.Tensor:
    """The new value of parameter p after step t (1-based) with gradient g, as the algorithms define them."""
    name, lr, wd = options["name"], options["lr"], options["weight_decay"]
    momentum = options.get("momentum", 0.0)
    if name == "adamw":
        p = p * (1 - lr * wd)  # decoupled weight decay
    else:
        g = g + wd * p  # L2 penalty in the gradient
    if name == "sgd":
        if momentum:
            state["buf"] = g if t == 1 else momentum * state["buf"] + g
            g = g + momentum * state["buf"] if options.get("nesterov") else state["buf"]
        return p - lr * g
    if name in ("adam", "adamw"):
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        state["m"] = beta1 * state.get("m", 0) + (1 - beta1) * g
        state["v"] = beta2 * state.get("v", 0) + (1 - beta2) * g * g
        m_hat, v_hat = state["m"] / (1 - beta1**t), state["v"] / (1 - beta2**t)
        return p - lr * m_hat / (v_hat.sqrt() + eps)
    alpha, eps = options["alpha"], 1e-8  # rmsprop
    state["v"] = alpha * state.get("v", 0) + (1 - alpha) * g * g
    step = g / (state["v"].sqrt() + eps)
    if momentum:
        state["buf"] = momentum * state.get("buf", 0) + step
        step = state["buf"]
    return p - lr * step


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast_step", "autograd"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_each_optimizer_choice_follows_its_update_rule(name, fast_path):
    frame = random_frame(16, 0)
    options = {**OPTIMIZERS[name], "decay_bias_and_norm": True}
    sections = dict(targets=("z",), data={"dataset": "synthetic", "batch_size": 16, "shuffle": False},  # 1 step/epoch
                    model={"hidden": [4], "dropout": 0.0}, optimizer=options,
                    train={"epochs": 3, "early_stopping": None, "fast_path": fast_path})
    cfg, prep, model, train, val = setup(frame, frame, **sections)
    reference = {n: p.detach().clone() for n, p in model.named_parameters()}
    fit(model, train, val, prep, cfg, CPU)

    _, _, twin, _, _ = setup(frame, frame, **sections)  # the same initial weights, stepped by reference_update
    states = {n: {} for n in reference}
    for t in range(1, 4):
        twin.load_state_dict(reference, strict=False)
        loss = F.mse_loss(twin(train.X)["z"].squeeze(1), train.y["z"])
        grads = torch.autograd.grad(loss, list(twin.parameters()))
        reference = {n: reference_update(options, reference[n], g, states[n], t)
                     for (n, _), g in zip(twin.named_parameters(), grads)}
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), reference[n], rtol=1e-4, atol=1e-6, msg=f"{name}: {n} after 3 steps")


def test_callbacks_are_called_in_order():
    recorder = RecordWeights()
    cfg, prep, model, train, val = setup(random_frame(16, 0), random_frame(8, 1), train={"epochs": 3, "early_stopping": None})
    fit(model, train, val, prep, cfg, CPU, [recorder])
    assert recorder.calls == ["begin", "epoch1", "epoch2", "epoch3", "end"]


def test_a_callback_can_stop_training():
    class StopAtTwo(Callback):
        def on_epoch_end(self, state, row):
            state.stop = state.epoch == 2

    cfg, prep, model, train, val = setup(random_frame(16, 0), random_frame(8, 1), train={"epochs": 10})
    assert len(fit(model, train, val, prep, cfg, CPU, [StopAtTwo()]).history) == 2


def test_multi_target_loss_is_the_weighted_sum():
    frame = random_frame(12, 0)
    cfg, prep, model, train, _ = setup(frame, frame, targets=("y", "z"))
    outputs = model(train.X)
    expected = 0.3 * F.cross_entropy(outputs["y"], train.y["y"]) + 2.0 * F.mse_loss(outputs["z"].squeeze(1), train.y["z"])
    got = Criterion(prep, TrainConfig(loss_weight={"y": 0.3, "z": 2.0}), train.y)(outputs, train.y)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    default = Criterion(prep, TrainConfig(), train.y)(outputs, train.y)
    assert default.item() == pytest.approx(
        (F.cross_entropy(outputs["y"], train.y["y"]) + F.mse_loss(outputs["z"].squeeze(1), train.y["z"])).item(), rel=1e-6
    )


def test_train_loss_is_the_row_weighted_mean_over_batches():
    # 10 rows, batch 4: batches of 4, 4 and 2 rows; with lr ~ 0 the weights do not move, so the epoch's
    # train_loss must equal the loss over all 10 rows at once.
    frame = random_frame(10, 0)
    cfg, prep, model, train, val = setup(frame, frame, targets=("z",), data={"dataset": "synthetic", "batch_size": 4},
                                         optimizer={"name": "sgd", "lr": 1e-12, "momentum": 0.0, "weight_decay": 0.0},
                                         train={"epochs": 1})
    initial = Criterion(prep, TrainConfig(), train.y)(model(train.X), train.y).item()
    state = fit(model, train, val, prep, cfg, CPU)
    assert state.history[0]["train_loss"] == pytest.approx(initial, rel=1e-5)


# ---- optimizer options ------------------------------------------------------------------------
def _tiny_model():
    return build_model(4, {"y": 1}, ModelConfig(hidden=[8], norm="layer", dropout=0), seed=0)


def test_decay_bias_and_norm_false_exempts_biases_and_norm_weights():
    model = _tiny_model()
    optimizer = make_optimizer(model, OptimizerConfig(weight_decay=0.1, decay_bias_and_norm=False), torch.device("cpu"))
    decayed, exempt = optimizer.param_groups
    assert decayed["weight_decay"] == 0.1 and exempt["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decayed["params"])  # only Linear weight matrices
    assert all(p.dim() == 1 for p in exempt["params"])  # biases and LayerNorm weights
    assert len(decayed["params"]) + len(exempt["params"]) == len(list(model.parameters()))


def test_weight_decay_shrinks_weights_when_gradients_are_zero():
    model = _tiny_model()
    before = model.trunk[0].weight.detach().clone()
    optimizer = make_optimizer(model, OptimizerConfig(name="sgd", lr=0.1, momentum=0, weight_decay=0.5), torch.device("cpu"))
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    assert torch.allclose(model.trunk[0].weight, before * (1 - 0.1 * 0.5))


def test_nesterov_without_sgd_momentum_is_a_config_error():
    with pytest.raises(ValueError, match="optimizer.nesterov"):
        OptimizerConfig(name="adam", nesterov=True)
    with pytest.raises(ValueError, match="optimizer.nesterov"):
        OptimizerConfig(name="sgd", momentum=0, nesterov=True)


# ---- regularisation -----------------------------------------------------------------------------
def test_label_smoothing_raises_the_loss_of_a_confident_correct_prediction():
    frame = random_frame(12, 0)
    cfg, prep, model, train, _ = setup(frame, frame, targets=("y",))
    confident = {"y": torch.nn.functional.one_hot(train.y["y"], len(prep.classes("y"))).float() * 20}
    plain = Criterion(prep, TrainConfig(), train.y)(confident, train.y)
    smoothed = Criterion(prep, TrainConfig(label_smoothing=0.2), train.y)(confident, train.y)
    assert plain.item() < 1e-6 < smoothed.item()


def test_balanced_class_weights_match_scikit_learn():
    from sklearn.utils.class_weight import compute_class_weight

    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2])
    expected = compute_class_weight("balanced", classes=np.array([0, 1, 2]), y=labels.numpy())
    assert torch.allclose(balanced_class_weights(labels, 3), torch.tensor(expected, dtype=torch.float32))
    assert balanced_class_weights(labels, 4)[3] == 0  # a class absent from training adds nothing


def test_gradient_clipping_bounds_the_update():
    frame = random_frame(32, 0)
    common = dict(targets=("z",), optimizer={"name": "sgd", "lr": 1.0, "momentum": 0.0, "weight_decay": 0.0},
                  train={"epochs": 1, "early_stopping": None}, data={"dataset": "synthetic", "batch_size": 32, "shuffle": False})
    moved = {}
    for clip in (None, 1e-3):
        cfg, prep, model, train, val = setup(frame, frame, **merge(common, {"train": {"grad_clip": clip}}))
        before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        fit(model, train, val, prep, cfg, CPU)
        moved[clip] = (torch.cat([p.detach().flatten() for p in model.parameters()]) - before).norm().item()
    assert moved[1e-3] == pytest.approx(1e-3, rel=1e-3)  # one SGD step of lr 1 moves exactly the clipped norm
    assert moved[None] > 10 * moved[1e-3]


# ---- learning-rate schedules --------------------------------------------------------------------
def _lrs(scheduler: dict, epochs: int = 10, **extra) -> list[float]:
    frame = random_frame(16, 0)
    cfg, prep, model, train, val = setup(frame, frame, targets=("z",), data={"dataset": "synthetic", "batch_size": 16},
                                         optimizer={"lr": 0.1}, train={"epochs": epochs, "early_stopping": None}, **extra)
    cfg = cfg.model_copy(update={"scheduler": SchedulerConfig(**scheduler)})
    return [row["lr"] for row in fit(model, train, val, prep, cfg, CPU).history]


def test_step_schedule_multiplies_by_gamma_every_step_size_epochs():
    assert _lrs({"name": "step", "step_size": 3, "gamma": 0.5}, epochs=7) == pytest.approx(
        [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025])


def test_cosine_schedule_falls_from_lr_to_min_lr():
    lrs = _lrs({"name": "cosine", "min_lr_ratio": 0.1}, epochs=11)
    assert lrs[0] == pytest.approx(0.1) and lrs[-1] == pytest.approx(0.01)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))


def test_one_cycle_rises_to_the_lr_then_anneals_far_below_it():
    lrs = _lrs({"name": "one_cycle"}, epochs=21)
    peak = int(np.argmax(lrs))
    assert lrs[0] == pytest.approx(0.1 / 25) and lrs[peak] == pytest.approx(0.1)
    assert 0 < peak < len(lrs) - 1 and lrs[-1] < 1e-5


def test_warmup_ramps_up_before_the_schedule():
    assert _lrs({"name": "none", "warmup_epochs": 3}, epochs=5) == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1])


def test_plateau_reduces_the_lr_when_the_monitor_stalls():
    schedule = LRSchedule(SchedulerConfig(name="plateau", patience=2, factor=0.5), total_epochs=8)
    state = SimpleNamespace(monitor="val_loss", maximise=False)
    factors = []
    for epoch, val_loss in enumerate([1.0, 0.9, 0.9, 0.9, 0.9, 0.95, 0.99, 0.8], start=1):
        state.epoch = epoch
        factors.append(schedule.factor(epoch))
        schedule.on_epoch_end(state, {"val_loss": val_loss})
    # best 0.9 at epoch 2; epochs 3-5 do not improve, the third of them (> patience 2) halves the lr for epoch 6
    assert factors == [1, 1, 1, 1, 1, 0.5, 0.5, 0.5]
    assert schedule.factor(9) == 0.5  # epoch 8 improved, so no further cut


def test_batch_norm_survives_a_final_batch_of_one_row():
    frame = random_frame(17, 0)  # 17 rows at batch 8: the last batch would hold a single row
    cfg, prep, model, train, val = setup(frame, frame, model={"hidden": [8], "norm": "batch", "dropout": 0.0},
                                         data={"dataset": "synthetic", "batch_size": 8}, train={"epochs": 2})
    assert len(fit(model, train, val, prep, cfg, CPU).history) == 2


def test_min_delta_ignores_improvements_smaller_than_it():
    frame = random_frame(32, 0)
    common = dict(targets=("z",), data={"dataset": "synthetic", "batch_size": 8}, optimizer={"lr": 1e-4})
    cfg, prep, model, train, val = setup(frame, frame, **common, train={"epochs": 6, "early_stopping": {"patience": 100, "min_delta": 10.0}})
    state = fit(model, train, val, prep, cfg, CPU)
    assert state.best_epoch == 1  # tiny-lr steps never improve val_loss by 10


def test_explicit_mode_max_on_a_loss_keeps_the_worst_epoch():
    frame = random_frame(32, 0)
    cfg, prep, model, train, val = setup(frame, frame, targets=("z",), data={"dataset": "synthetic", "batch_size": 8},
                                         optimizer={"lr": 0.01}, train={"epochs": 6, "early_stopping": {"patience": 100, "mode": "max"}})
    state = fit(model, train, val, prep, cfg, CPU)
    losses = [row["val_loss"] for row in state.history]
    assert state.best_epoch == int(np.argmax(losses)) + 1


def test_forward_split_in_chunks_equals_one_pass(monkeypatch):
    """Scoring a split runs in chunks of EVAL_CHUNK_ROWS rows (bounded memory) with the same outputs as one pass."""
    import dlrun.model.forward as forward

    cfg, prep, model, train, _ = setup(random_frame(50, 0), random_frame(10, 1), targets=("y", "z"))
    whole = forward.forward_split(model, train.X)
    monkeypatch.setattr(forward, "EVAL_CHUNK_ROWS", 7)
    chunked = forward.forward_split(model, train.X)
    assert model.training  # the train/eval mode is restored
    for target in ("y", "z"):
        assert chunked[target].shape == whole[target].shape == (50, prep.output_sizes()[target])
        torch.testing.assert_close(chunked[target], whole[target])

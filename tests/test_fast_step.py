"""The fast step computes autograd's step: the same loss, gradients and parameter updates for every configuration it
covers, step after step (optimizer state included); everything else falls back to autograd, and says why."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from dlrun.config.load import validate_config
from dlrun.training.fast_step import FastStep, unsupported
from dlrun.training.losses import Criterion
from dlrun.model.mlp import build_model
from dlrun.run.runner import prepare, train
from dlrun.training.step import AutogradStep, make_step
from dlrun.training.transfer import freeze

from conftest import make_classification_frame, merge, run_cli_many, write_config

CPU = torch.device("cpu")
N_STEPS, BATCH = 4, 24  # 4 steps: the first creates the optimizer state, the rest reuse it


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Data for each head mix, prepared once: {heads: (raw config, Prepared)}."""
    pets = tmp_path_factory.mktemp("data") / "pets.csv"
    make_classification_frame(n_rows=120).to_csv(pets, index=False)
    synthetic = {"dataset": "synthetic", "synthetic": {"n_samples": 200}}
    sources = {
        "regression": {**synthetic, "target": "salary"},
        "classification": {"path": str(pets), "target": "species"},  # 3 classes
        "both": {**synthetic, "target": ["label", "salary"]},  # one classification and one regression head
    }
    cache = {}
    for heads, data in sources.items():
        raw = {"seed": 0, "device": "cpu", "data": data, "model": {"hidden": [12, 8]}}
        cache[heads] = (raw, prepare(validate_config(raw)))
    return cache


def _config(prepared, heads: str, sections: dict, fast_path: bool):
    raw, ready = prepared[heads]
    cfg = validate_config(merge(raw, merge(sections, {"train": {"fast_path": fast_path}})))
    return cfg.model_copy(update={"data": ready.cfg.data}), ready


def _trajectory(prepared, heads: str, sections: dict, fast_path: bool, device=CPU):
    """Loss, gradients and parameters after each of N_STEPS steps, and the step object that made them."""
    cfg, ready = _config(prepared, heads, sections, fast_path)
    split = ready.splits["train"]
    model = build_model(len(ready.prep.feature_names_), ready.prep.output_sizes(), cfg.model, cfg.seed).to(device)
    freeze(model, cfg.train.freeze)
    step = make_step(model, cfg, Criterion(ready.prep, cfg.train, split.y), device)
    torch.manual_seed(1)  # dropout draws from the global generator in both paths
    record = []
    for i in range(N_STEPS):
        rows = slice(i * BATCH, (i + 1) * BATCH)
        loss = step(split.X[rows].to(device), {t: v[rows].to(device) for t, v in split.y.items()})
        record.append((torch.stack(loss).cpu(), {n: p.grad.cpu().clone() for n, p in model.named_parameters() if p.grad is not None},
                       {n: p.detach().cpu().clone() for n, p in model.named_parameters()}))
    return record, step


def _assert_same_steps(fast, general):
    for (loss_f, grads_f, params_f), (loss_g, grads_g, params_g) in zip(fast, general):
        torch.testing.assert_close(loss_f, loss_g, rtol=1e-5, atol=1e-6)
        assert grads_f.keys() == grads_g.keys()
        for name in grads_g:
            torch.testing.assert_close(grads_f[name], grads_g[name], rtol=1e-4, atol=1e-6, msg=f"gradient of {name}")
        for name in params_g:
            torch.testing.assert_close(params_f[name], params_g[name], rtol=1e-5, atol=1e-6, msg=f"{name} after the step")


HEADS = ["regression", "classification", "both"]
ACTIVATIONS = ["relu", "leaky_relu", "tanh", "sigmoid", "gelu", "elu"]
OPTIMIZERS = {
    "adam": {"name": "adam", "weight_decay": 0.01},
    "adamw": {"name": "adamw", "weight_decay": 0.1},
    "sgd": {"name": "sgd", "momentum": 0.0, "lr": 0.05},
    "sgd_momentum_decay": {"name": "sgd", "momentum": 0.9, "weight_decay": 0.01, "lr": 0.05},
    "sgd_nesterov": {"name": "sgd", "momentum": 0.9, "nesterov": True, "lr": 0.05},
    "rmsprop": {"name": "rmsprop", "momentum": 0.0, "weight_decay": 0.01},
    "rmsprop_momentum": {"name": "rmsprop", "momentum": 0.9, "alpha": 0.9},
}
# Options that change the step, each on its own and then all at once; the loss options need a classification head.
OPTIONS = {
    "dropout": ({"model": {"dropout": 0.3}}, HEADS),
    "dropout_per_layer_and_leaky": ({"model": {"dropout": [0.5, 0.0], "activation": "leaky_relu", "leaky_relu_slope": 0.2}}, HEADS),
    "no_decay_on_biases": ({"optimizer": {"weight_decay": 0.1, "decay_bias_and_norm": False}}, HEADS),
    "trunk_lr": ({"train": {"trunk_lr": 0.0001}, "optimizer": {"lr": 0.01}}, HEADS),
    "grad_clip": ({"train": {"grad_clip": 0.05}}, HEADS),
    "label_smoothing": ({"train": {"label_smoothing": 0.2}}, ["classification", "both"]),
    "class_weights": ({"train": {"class_weights": "balanced"}}, ["classification", "both"]),
    "smoothing_and_weights": ({"train": {"label_smoothing": 0.1, "class_weights": "balanced"}}, ["classification", "both"]),
    "loss_weight": ({"train": {"loss_weight": {"salary": 0.3, "label": 2.0}}}, ["both"]),
    "frozen_first_layer": ({"train": {"freeze": [0]}}, HEADS),
    "frozen_second_layer": ({"train": {"freeze": [1], "trunk_lr": 0.003}, "model": {"dropout": 0.2}}, HEADS),
    "frozen_trunk": ({"train": {"freeze": ["trunk"]}}, ["both"]),
    "frozen_head": ({"train": {"freeze": ["heads.0"]}, "optimizer": {"name": "sgd", "lr": 0.05}}, ["both"]),
    "everything": ({"model": {"dropout": 0.2, "activation": "tanh", "init": "xavier_uniform", "hidden": [10, 9, 8]},
                    "optimizer": {"name": "adamw", "weight_decay": 0.05, "decay_bias_and_norm": False},
                    "train": {"grad_clip": 0.1, "trunk_lr": 0.003, "label_smoothing": 0.1, "class_weights": "balanced",
                              "loss_weight": {"label": 0.5}}}, ["both"]),
}


def _check(prepared, heads, sections):
    fast, fast_step = _trajectory(prepared, heads, sections, True)
    general, general_step = _trajectory(prepared, heads, sections, False)
    assert isinstance(fast_step, FastStep) and isinstance(general_step, AutogradStep)
    _assert_same_steps(fast, general)
    assert any(not torch.equal(fast[-1][2][name], fast[0][2][name]) for name in fast[0][2])  # it did train


@pytest.mark.parametrize("heads", HEADS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation_steps_as_autograd_does(prepared, heads, activation):
    _check(prepared, heads, {"model": {"activation": activation, "dropout": 0.1}})


@pytest.mark.parametrize("heads", HEADS)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_steps_as_torch_optim_does(prepared, heads, optimizer):
    _check(prepared, heads, {"optimizer": OPTIMIZERS[optimizer]})


@pytest.mark.parametrize("option, heads", [(name, heads) for name, (_, mixes) in OPTIONS.items() for heads in mixes])
def test_every_covered_option_steps_as_autograd_does(prepared, option, heads):
    _check(prepared, heads, OPTIONS[option][0])


@pytest.mark.parametrize("sections, reason", [
    ({"model": {"norm": "batch"}}, "BatchNorm1d layers"),
    ({"model": {"norm": "layer"}}, "LayerNorm layers"),
    ({"train": {"fast_path": False}}, "train.fast_path is false"),
])
def test_what_the_fast_step_lacks_falls_back_to_autograd_with_the_reason(prepared, sections, reason):
    cfg, ready = _config(prepared, "both", sections, sections.get("train", {}).get("fast_path", True))
    model = build_model(len(ready.prep.feature_names_), ready.prep.output_sizes(), cfg.model, cfg.seed)
    freeze(model, cfg.train.freeze)
    assert unsupported(model, cfg) == reason
    assert isinstance(make_step(model, cfg, Criterion(ready.prep, cfg.train, ready.splits["train"].y), CPU), AutogradStep)


def test_a_model_with_nothing_left_to_train_is_not_for_the_fast_step(prepared):
    cfg, ready = _config(prepared, "both", {"train": {"freeze": ["trunk", "heads"]}}, True)
    model = build_model(len(ready.prep.feature_names_), ready.prep.output_sizes(), cfg.model, cfg.seed)
    freeze(model, cfg.train.freeze)
    assert unsupported(model, cfg) == "every parameter is frozen (train.freeze)"


def test_the_model_parameters_stay_the_weights_the_fast_step_trains(prepared):
    """load_state_dict (early stopping's best epoch, resume) writes into the buffers the step updates, and the
    step's update shows in the model: parameters are views of the flat buffers, not copies."""
    cfg, ready = _config(prepared, "regression", {}, True)
    split = ready.splits["train"]
    batch = (split.X[:BATCH], {t: v[:BATCH] for t, v in split.y.items()})
    criterion = Criterion(ready.prep, cfg.train, split.y)
    weights = build_model(len(ready.prep.feature_names_), ready.prep.output_sizes(), cfg.model, cfg.seed + 1).state_dict()
    models = {}
    for path in (True, False):
        model = build_model(len(ready.prep.feature_names_), ready.prep.output_sizes(), cfg.model, cfg.seed)
        step = make_step(model, cfg.model_copy(update={"train": cfg.train.model_copy(update={"fast_path": path})}), criterion, CPU)
        model.load_state_dict(weights)  # after the step was built, as fit restores the best epoch
        torch.manual_seed(1)  # the same dropout masks
        step(*batch)
        models[path] = model.state_dict()
    for name, tensor in models[False].items():
        assert not torch.equal(tensor, weights[name])
        torch.testing.assert_close(models[True][name], tensor, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd_momentum_decay", "rmsprop_momentum"])
def test_optimizer_state_round_trips_through_its_state_dict(prepared, optimizer):
    """What last.pt stores (optimizer.state_dict) restores the fast step's optimizer exactly."""
    cfg, ready = _config(prepared, "both", {"optimizer": OPTIMIZERS[optimizer], "train": {"trunk_lr": 0.002}}, True)
    split = ready.splits["train"]
    batch = (split.X[:BATCH], {t: v[:BATCH] for t, v in split.y.items()})

    def fresh():
        model = build_model(len(ready.prep.feature_names_), ready.prep.output_sizes(), cfg.model, cfg.seed)
        return model, make_step(model, cfg, Criterion(ready.prep, cfg.train, split.y), CPU)

    model_a, step_a = fresh()
    for _ in range(3):
        step_a(*batch)
    # copies, as torch.save and torch.load make them: a state_dict shares its tensors with the optimizer
    saved_model, saved_optimizer = copy.deepcopy(model_a.state_dict()), copy.deepcopy(step_a.optimizer.state_dict())
    model_b, step_b = fresh()
    model_b.load_state_dict(saved_model)
    step_b.optimizer.load_state_dict(saved_optimizer)
    for step in (step_a, step_b):
        torch.manual_seed(1)  # the same dropout masks
        step(*batch)
    for (name, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        assert torch.equal(a, b), name
    assert len(saved_optimizer["param_groups"]) == 2  # trunk and heads learn at different rates
    step_b.optimizer.zero_grad()  # as a callback might call it on TrainState.optimizer
    assert all(not p.grad.any() for p in model_b.parameters())
    with pytest.raises(ValueError, match="parameter groups"):
        step_b.optimizer.load_state_dict({**saved_optimizer, "param_groups": saved_optimizer["param_groups"][:1]})


@pytest.mark.parametrize("optimizer", ["adam", "sgd_momentum_decay", "rmsprop_momentum"])
def test_a_checkpoint_of_the_autograd_path_resumes_on_the_fast_path(prepared, optimizer):
    """A run checkpointed by torch.optim (one state entry per parameter; runs from before the fast step) continues
    on the fast step as it would have on autograd."""
    cfg, ready = _config(prepared, "both", {"optimizer": OPTIMIZERS[optimizer], "train": {"trunk_lr": 0.002}}, False)
    split = ready.splits["train"]
    batch = (split.X[:BATCH], {t: v[:BATCH] for t, v in split.y.items()})
    criterion = Criterion(ready.prep, cfg.train, split.y)
    model = build_model(len(ready.prep.feature_names_), ready.prep.output_sizes(), cfg.model, cfg.seed)
    general = make_step(model, cfg, criterion, CPU)
    for _ in range(3):
        general(*batch)
    saved_model, saved_optimizer = copy.deepcopy(model.state_dict()), copy.deepcopy(general.optimizer.state_dict())
    resumed = build_model(len(ready.prep.feature_names_), ready.prep.output_sizes(), cfg.model, cfg.seed)
    fast = make_step(resumed, cfg.model_copy(update={"train": cfg.train.model_copy(update={"fast_path": True})}), criterion, CPU)
    resumed.load_state_dict(saved_model)
    fast.optimizer.load_state_dict(saved_optimizer)
    for step in (general, fast):
        torch.manual_seed(1)
        step(*batch)
    for (name, a), b in zip(model.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_a_run_gives_the_same_metrics_on_either_path_and_records_which_ran_and_its_stage_times(tmp_path):
    config = {"seed": 2, "device": "cpu", "data": {"dataset": "synthetic", "synthetic": {"n_samples": 400}},
              "model": {"hidden": [16, 8], "dropout": 0.1}, "scheduler": {"name": "cosine"},
              "train": {"epochs": 6, "grad_clip": 1.0, "label_smoothing": 0.05}}
    fast = train(validate_config(config), tmp_path / "fast")
    general = train(validate_config(merge(config, {"train": {"fast_path": False}})), tmp_path / "general")
    for split, targets in general.metrics.items():
        for target, values in targets.items():
            assert fast.metrics[split][target] == pytest.approx(values, rel=1e-4, abs=1e-5), (split, target)
    info = json.loads((fast.run_dir / "run.json").read_text())
    assert info["train_step"] == {"path": "fast", "reason": None}
    assert set(info["seconds"]) == {"load_and_preprocess", "train", "evaluate_and_write", "plots_and_report"}
    assert all(seconds >= 0 for seconds in info["seconds"].values()) and info["seconds"]["train"] > 0
    assert json.loads((general.run_dir / "run.json").read_text())["train_step"] == {
        "path": "general", "reason": "train.fast_path is false"}


def test_cli_train_uses_the_fast_path_unless_told_not_to(tmp_path):
    config = write_config(tmp_path / "c.yaml", {"dataset": "synthetic", "synthetic": {"n_samples": 300}},
                          model={"hidden": [16, 8], "norm": "none", "dropout": 0.0})
    results = run_cli_many({
        "fast": (["train", config, "--runs-dir", tmp_path / "fast"], tmp_path),
        "off": (["train", config, "--runs-dir", tmp_path / "off", "--set", "train.fast_path=off"], tmp_path),
        "norm": (["train", config, "--runs-dir", tmp_path / "norm", "--set", "model.norm=layer"], tmp_path),
        "bad": (["train", config, "--runs-dir", tmp_path / "bad", "--set", "train.fast_path=sometimes"], tmp_path),
    })
    steps = {}
    for key in ("fast", "off", "norm"):
        assert results[key].returncode == 0, results[key].stderr
        (run_dir,) = (tmp_path / key).iterdir()
        steps[key] = json.loads((run_dir / "run.json").read_text())["train_step"]
        steps[key + "_metrics"] = json.loads((run_dir / "metrics.json").read_text())
    assert steps["fast"]["path"] == "fast" and steps["off"]["path"] == "general"
    assert steps["norm"] == {"path": "general", "reason": "LayerNorm layers"}
    assert steps["fast_metrics"]["test"]["salary"]["r2"] == pytest.approx(steps["off_metrics"]["test"]["salary"]["r2"], abs=1e-4)
    bad = results["bad"]
    assert bad.returncode == 2 and "train.fast_path" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fast_step_on_cuda_matches_autograd(prepared):
    cuda = torch.device("cuda")
    for heads in HEADS:
        sections = {"model": {"dropout": 0.2}, "train": {"grad_clip": 0.1}}
        fast, _ = _trajectory(prepared, heads, sections, True, cuda)
        general, _ = _trajectory(prepared, heads, sections, False, cuda)
        _assert_same_steps(fast, general)


FALLBACK_CONFIG = {"seed": 2, "device": "cpu", "data": {"dataset": "synthetic", "synthetic": {"n_samples": 300}},
                   "model": {"hidden": [16, 8], "activation": "relu"}, "optimizer": {"name": "adam"},
                   "train": {"epochs": 3}}


def _fallback_run(tmp_path):
    run = train(validate_config(FALLBACK_CONFIG), tmp_path / "runs")
    return run, json.loads((run.run_dir / "run.json").read_text())["train_step"]


def test_a_torch_without_the_fused_adam_kernel_trains_on_autograd_and_says_why(tmp_path, monkeypatch):
    monkeypatch.delattr(torch, "_fused_adam_")  # an older torch; torch.optim's fused Adam cannot run either
    run, step = _fallback_run(tmp_path)
    assert step["path"] == "general" and "torch._fused_adam_" in step["reason"]
    assert run.epochs_run == 3


def test_a_fused_kernel_without_a_cpu_implementation_trains_on_autograd(tmp_path, monkeypatch):
    def no_cpu_kernel(*args, **kwargs):
        raise NotImplementedError("Could not run 'aten::_fused_adam_' with arguments from the 'CPU' backend.")

    monkeypatch.setattr(torch, "_fused_adam_", no_cpu_kernel)  # torch before 2.4 had the op for CUDA only
    run, step = _fallback_run(tmp_path)
    assert step["path"] == "general" and "cannot run torch._fused_adam_ on cpu" in step["reason"]
    assert run.epochs_run == 3


@pytest.mark.parametrize("op, activation", [("threshold_backward", "relu"), ("gelu_backward", "gelu"),
                                            ("nll_loss_backward", "relu")])
def test_a_missing_private_aten_op_sends_the_run_to_autograd(prepared, monkeypatch, op, activation):
    import dlrun.training.fast_step as fast_step

    class AtenWithout:  # torch.ops.aten as a torch lacking `op` would have it
        def __getattr__(self, name):
            if name == op:
                raise AttributeError(name)
            return getattr(torch.ops.aten, name)

    monkeypatch.setattr(fast_step, "aten", AtenWithout())
    cfg, ready = _config(prepared, "both", {"model": {"activation": activation}}, True)
    model = build_model(len(ready.prep.feature_names_), ready.prep.output_sizes(), cfg.model, cfg.seed)
    assert unsupported(model, cfg) == f"torch {torch.__version__} lacks aten.{op}"
    assert isinstance(make_step(model, cfg, Criterion(ready.prep, cfg.train, ready.splits["train"].y), CPU), AutogradStep)

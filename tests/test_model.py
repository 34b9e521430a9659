"""Stage 3: the MLP built from the config: a shared trunk, one head per target, seeded weights."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dlrun.config.schema import ModelConfig
from dlrun.model.mlp import build_model


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


@pytest.mark.parametrize("outputs", [{"type": 7}, {"wages": 1}, {"label": 2, "salary": 1}])
def test_each_head_has_its_output_shape(outputs):
    model = build_model(5, outputs, ModelConfig(hidden=[8, 4]), seed=0)
    out = model(torch.randn(3, 5))  # (B, n_features)
    assert list(out) == list(outputs)
    for target, size in outputs.items():
        assert out[target].shape == (3, size)


def test_heads_share_one_trunk():
    model = build_model(5, {"a": 3, "b": 1}, ModelConfig(hidden=[8, 4], dropout=0.0), seed=0)
    linears = [module for module in model.trunk if isinstance(module, nn.Linear)]
    assert [(layer.in_features, layer.out_features) for layer in linears] == [(5, 8), (8, 4)]
    assert [(head.in_features, head.out_features) for head in model.heads] == [(4, 3), (4, 1)]


def test_target_names_that_are_not_identifiers_work():
    out = build_model(2, {"type": 2, "a.b": 1, "x y": 1}, ModelConfig(hidden=[4]), seed=0)(torch.randn(1, 2))
    assert set(out) == {"type", "a.b", "x y"}


def test_no_hidden_layers_is_a_linear_model():
    model = build_model(3, {"y": 1}, ModelConfig(hidden=[], dropout=0.0), seed=0)
    assert model(torch.randn(4, 3))["y"].shape == (4, 1)


def _phi(x: float) -> float:
    """The standard normal CDF."""
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


# act(-1) + act(2) for each activation, from its definition (leaky_relu with the default slope 0.01).
ACTIVATION_SUMS = {
    "relu": 0.0 + 2.0,
    "leaky_relu": -0.01 + 2.0,
    "sigmoid": 1 / (1 + math.e) + 1 / (1 + math.exp(-2)),
    "tanh": math.tanh(-1) + math.tanh(2),
    "gelu": -1 * _phi(-1) + 2 * _phi(2),
    "elu": math.exp(-1) - 1 + 2.0,
}


def _linears(model: nn.Module) -> list[nn.Linear]:
    return [module for module in model.modules() if isinstance(module, nn.Linear)]


@pytest.mark.parametrize("activation", list(ACTIVATION_SUMS))
def test_each_activation_choice_computes_its_function(activation):
    # One hidden layer of 2 units with identity weights and a head that sums them: the output is act(-1) + act(2).
    model = build_model(2, {"y": 1}, ModelConfig(hidden=[2], activation=activation, dropout=0.0), seed=0)
    hidden, head = _linears(model)
    with torch.no_grad():
        hidden.weight.copy_(torch.eye(2)), hidden.bias.zero_()
        head.weight.fill_(1.0), head.bias.zero_()
    out = model(torch.tensor([[-1.0, 2.0]]))["y"]
    assert out.item() == pytest.approx(ACTIVATION_SUMS[activation], rel=1e-6)


def test_dropout_zeroes_units_in_training_and_scales_the_kept_ones():
    # One sigmoid unit (always > 0) and a bias-free head: each training-mode output is 0 (the unit dropped) or
    # 1 / (1 - p) times the evaluation-mode output (kept, and scaled so the expectation is unchanged).
    model = build_model(3, {"y": 1}, ModelConfig(hidden=[1], activation="sigmoid", dropout=0.25, bias_init="zero"), seed=0)
    x = torch.randn(4000, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model.eval()(x)["y"]
        torch.manual_seed(0)
        out = model.train()(x)["y"]
    dropped = out == 0
    torch.testing.assert_close(out[~dropped], expected[~dropped] / 0.75)
    assert 0.22 < dropped.float().mean().item() < 0.28


def test_seeded_build_is_identical():
    cfg = ModelConfig(hidden=[16, 8])
    assert same_weights(weights(build_model(6, {"y": 3}, cfg, seed=4)), weights(build_model(6, {"y": 3}, cfg, seed=4)))
    assert not same_weights(weights(build_model(6, {"y": 3}, cfg, seed=4)), weights(build_model(6, {"y": 3}, cfg, seed=5)))


def test_build_leaves_the_global_generator_alone():
    before = torch.get_rng_state()
    build_model(6, {"y": 3}, ModelConfig(hidden=[16]), seed=4)
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("init", ["uniform", "normal", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal"])
def test_init_scheme_changes_the_weights(init):
    default = weights(build_model(6, {"y": 3}, ModelConfig(hidden=[16, 8]), seed=0))
    custom = build_model(6, {"y": 3}, ModelConfig(hidden=[16, 8], init=init, bias_init="zero"), seed=0)
    changed = weights(custom)
    assert not same_weights(default, changed)
    for module in custom.modules():
        if isinstance(module, nn.Linear):
            assert torch.count_nonzero(module.bias) == 0
    again = build_model(6, {"y": 3}, ModelConfig(hidden=[16, 8], init=init, bias_init="zero"), seed=0)
    assert same_weights(changed, weights(again))


def test_default_bias_init_keeps_pytorch_biases():
    model = build_model(6, {"y": 3}, ModelConfig(hidden=[16], init="xavier_uniform"), seed=0)
    assert torch.count_nonzero(model.trunk[0].bias) > 0


def test_uniform_and_normal_init_follow_their_range_and_std():
    uniform = build_model(300, {"y": 1}, ModelConfig(hidden=[300], init="uniform", init_range=0.2), seed=0).trunk[0].weight
    assert uniform.abs().max().item() <= 0.2 and uniform.abs().max().item() > 0.19
    normal = build_model(300, {"y": 1}, ModelConfig(hidden=[300], init="normal", init_std=0.3), seed=0).trunk[0].weight
    assert normal.std().item() == pytest.approx(0.3, rel=0.05)


def test_leaky_relu_uses_the_configured_slope():
    model = build_model(2, {"y": 1}, ModelConfig(hidden=[4], activation="leaky_relu", leaky_relu_slope=0.2, dropout=0), seed=0)
    activation = model.trunk[1]
    assert isinstance(activation, nn.LeakyReLU)
    assert activation(torch.tensor([-1.0])).item() == pytest.approx(-0.2)


def test_dropout_per_layer_and_norm_layers_are_built():
    model = build_model(6, {"y": 1}, ModelConfig(hidden=[16, 8], dropout=[0.3, 0.0], norm="batch"), seed=0)
    kinds = [type(m).__name__ for m in model.trunk]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear", "BatchNorm1d", "ReLU"]
    assert model.trunk[3].p == 0.3
    layer = build_model(6, {"y": 1}, ModelConfig(hidden=[16], norm="layer", dropout=0), seed=0)
    assert isinstance(layer.trunk[1], nn.LayerNorm)


def test_layer_norm_normalises_each_row():
    model = build_model(6, {"y": 1}, ModelConfig(hidden=[32], norm="layer", dropout=0), seed=0).eval()
    normalised = model.trunk[:2](torch.randn(5, 6) * 10)  # after Linear + LayerNorm: (5, 32)
    assert torch.allclose(normalised.mean(dim=1), torch.zeros(5), atol=1e-5)


def test_kaiming_init_has_the_expected_spread():
    model = build_model(400, {"y": 1}, ModelConfig(hidden=[400], init="kaiming_normal"), seed=0)
    first = model.trunk[0].weight  # (400, 400): std should be sqrt(2 / fan_in)
    assert first.std().item() == pytest.approx((2 / 400) ** 0.5, rel=0.05)


def test_dropout_changes_outputs_in_train_mode_only():
    model = build_model(8, {"y": 2}, ModelConfig(hidden=[64, 64], dropout=0.5), seed=0)
    x = torch.randn(16, 8)
    model.train()
    torch.manual_seed(0)
    first = model(x)["y"]
    second = model(x)["y"]
    assert not torch.equal(first, second)
    model.eval()
    assert torch.equal(model(x)["y"], model(x)["y"])


def test_zero_dropout_adds_no_dropout_layers():
    model = build_model(8, {"y": 2}, ModelConfig(hidden=[4, 4], dropout=0.0), seed=0)
    assert not any(isinstance(module, nn.Dropout) for module in model.modules())


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "sigmoid", "tanh", "gelu", "elu"])
def test_heads_return_raw_logits_whatever_the_activation(activation):
    # The loss applies softmax itself: a head that squashed its output would apply it twice.
    model = build_model(4, {"y": 3}, ModelConfig(hidden=[8], activation=activation, dropout=0), seed=0).eval()
    assert isinstance(model.heads[0], nn.Linear)
    out = model(torch.randn(64, 4) * 5)["y"]
    assert not torch.allclose(out.softmax(dim=1).sum(dim=1), out.sum(dim=1))  # not probabilities already
    assert ((out < 0) | (out > 1)).any()  # outside [0, 1]: not sigmoid-squashed either

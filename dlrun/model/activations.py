"""The hidden-layer activations a config can name, shared by the MLP and TabM trunks."""

from __future__ import annotations

from torch import nn

from dlrun.config.schema import ModelConfig

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "elu": nn.ELU,
}
# The gain torch.nn.init uses for each activation; GELU/ELU are closest to ReLU's.
INIT_NONLINEARITY = {"relu": "relu", "leaky_relu": "leaky_relu", "sigmoid": "sigmoid", "tanh": "tanh", "gelu": "relu", "elu": "relu"}


def make_activation(cfg: ModelConfig) -> nn.Module:
    activation = ACTIVATIONS[cfg.activation]
    return activation(cfg.leaky_relu_slope) if cfg.activation == "leaky_relu" else activation()

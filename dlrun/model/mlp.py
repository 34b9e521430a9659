"""Stage 3: the network. A shared MLP trunk and one linear head per target; heads return logits or scaled values."""

from __future__ import annotations

import torch
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


class MLP(nn.Module):
    """x (B, n_features) -> {target: (B, n_outputs)}; no output activation, losses take logits."""

    def __init__(self, n_features: int, output_sizes: dict[str, int], cfg: ModelConfig):
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for hidden, dropout in zip(cfg.hidden, cfg.layer_dropout()):
            layers.append(nn.Linear(width, hidden))
            if cfg.norm == "batch":
                layers.append(nn.BatchNorm1d(hidden))
            elif cfg.norm == "layer":
                layers.append(nn.LayerNorm(hidden))
            activation = ACTIVATIONS[cfg.activation]
            layers.append(activation(cfg.leaky_relu_slope) if cfg.activation == "leaky_relu" else activation())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        self.trunk = nn.Sequential(*layers)
        # A list, not a ModuleDict: target names such as `type` or `a.b` are not valid module attribute names.
        self.targets = list(output_sizes)
        self.heads = nn.ModuleList(nn.Linear(width, size) for size in output_sizes.values())

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        shared = self.trunk(x)  # (B, hidden[-1])
        return {target: head(shared) for target, head in zip(self.targets, self.heads)}

    # ---- what other stages ask of the network (they never use its attribute names) ----------------
    def hidden_layers(self) -> list[nn.Module]:
        """The shared trunk's modules in order: per hidden layer a Linear, an optional norm, the activation and an
        optional Dropout."""
        return list(self.trunk)

    def head(self, target: str) -> nn.Linear:
        return self.heads[self.targets.index(target)]

    def head_target(self, name: str) -> str | None:
        """The target whose head a parameter or module name (`heads.1.weight`) belongs to; None for the hidden layers."""
        parts = name.split(".")
        return self.targets[int(parts[1])] if parts[0] == "heads" and len(parts) > 1 else None


def build_model(n_features: int, output_sizes: dict[str, int], cfg: ModelConfig, seed: int) -> MLP:
    """Build the MLP with weights drawn from `seed`, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MLP(n_features, output_sizes, cfg)
        _initialise(model, cfg)
    return model


def _initialise(model: nn.Module, cfg: ModelConfig) -> None:
    """Re-draw Linear weights (and zero biases) as the config asks; `default` keeps PyTorch's own init."""
    nonlinearity = INIT_NONLINEARITY[cfg.activation]
    slope = {"a": cfg.leaky_relu_slope} if cfg.activation == "leaky_relu" else {}
    gain = nn.init.calculate_gain(nonlinearity, cfg.leaky_relu_slope if cfg.activation == "leaky_relu" else None)
    for module in model.modules():
        if not isinstance(module, nn.Linear):
            continue
        if cfg.init == "uniform":
            nn.init.uniform_(module.weight, -cfg.init_range, cfg.init_range)
        elif cfg.init == "normal":
            nn.init.normal_(module.weight, std=cfg.init_std)
        elif cfg.init == "xavier_uniform":
            nn.init.xavier_uniform_(module.weight, gain=gain)
        elif cfg.init == "xavier_normal":
            nn.init.xavier_normal_(module.weight, gain=gain)
        elif cfg.init == "kaiming_uniform":
            nn.init.kaiming_uniform_(module.weight, nonlinearity=nonlinearity, **slope)
        elif cfg.init == "kaiming_normal":
            nn.init.kaiming_normal_(module.weight, nonlinearity=nonlinearity, **slope)
        if cfg.bias_init == "zero":
            nn.init.zeros_(module.bias)

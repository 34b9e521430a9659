"""Stage 3: the network. A shared MLP trunk and one linear head per target; heads return logits or scaled values."""

from __future__ import annotations

import torch
from torch import nn

from dlrun.config import ModelConfig

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
        for hidden in cfg.hidden:
            layers += [nn.Linear(width, hidden), ACTIVATIONS[cfg.activation]()]
            if cfg.dropout > 0:
                layers.append(nn.Dropout(cfg.dropout))
            width = hidden
        self.trunk = nn.Sequential(*layers)
        # A list, not a ModuleDict: target names such as `type` or `a.b` are not valid module attribute names.
        self.targets = list(output_sizes)
        self.heads = nn.ModuleList(nn.Linear(width, size) for size in output_sizes.values())

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        shared = self.trunk(x)  # (B, hidden[-1])
        return {target: head(shared) for target, head in zip(self.targets, self.heads)}


def build_model(n_features: int, output_sizes: dict[str, int], cfg: ModelConfig, seed: int) -> MLP:
    """Build the MLP with weights drawn from `seed`, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MLP(n_features, output_sizes, cfg)
        if cfg.init != "default":
            _initialise(model, cfg.init, INIT_NONLINEARITY[cfg.activation])
    return model


def _initialise(model: nn.Module, scheme: str, nonlinearity: str) -> None:
    for module in model.modules():
        if not isinstance(module, nn.Linear):
            continue
        if scheme == "xavier_uniform":
            nn.init.xavier_uniform_(module.weight, gain=nn.init.calculate_gain(nonlinearity))
        elif scheme == "xavier_normal":
            nn.init.xavier_normal_(module.weight, gain=nn.init.calculate_gain(nonlinearity))
        elif scheme == "kaiming_uniform":
            nn.init.kaiming_uniform_(module.weight, nonlinearity=nonlinearity)
        elif scheme == "kaiming_normal":
            nn.init.kaiming_normal_(module.weight, nonlinearity=nonlinearity)
        nn.init.zeros_(module.bias)

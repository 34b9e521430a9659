"""Which modules hold a layer's weight matrix, for code that walks a model's layers (diagnostics, train.freeze)."""

from __future__ import annotations

import sys
from typing import Callable

from torch import nn

from dlrun.config.schema import ModelConfig
from dlrun.model.activations import make_activation


def hidden_stack(cfg: ModelConfig, width: int, linear: Callable[[int, int, int], nn.Module],
                 norms: bool = True) -> tuple[nn.Sequential, int]:
    """The trunk: per hidden layer `linear(index, in, out)`, the configured norm (with `norms`), the activation and a
    Dropout when the layer has one. Returns it with the width of its output."""
    layers: list[nn.Module] = []
    for index, (hidden, dropout) in enumerate(zip(cfg.hidden, cfg.layer_dropout())):
        layers.append(linear(index, width, hidden))
        if norms and cfg.norm == "batch":
            layers.append(nn.BatchNorm1d(hidden))
        elif norms and cfg.norm == "layer":
            layers.append(nn.LayerNorm(hidden))
        layers.append(make_activation(cfg))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = hidden
    return nn.Sequential(*layers), width


def linear_layers() -> tuple[type, ...]:
    """nn.Linear, and TabM's ensemble layers once the tabm package is loaded: a TabM model cannot exist before, and
    importing it only to ask would cost every run the second it takes to load (it pulls in scikit-learn)."""
    tabm = sys.modules.get("tabm")
    return (nn.Linear,) if tabm is None else (nn.Linear, tabm.LinearBatchEnsemble, tabm.LinearEnsemble)


class TrunkAndHeads:
    """What other stages ask of a network built as a shared trunk (`trunk`, an nn.Sequential) and one head per target
    (`heads`, in `targets` order), so they never use those attribute names: the MLP and TabM both are."""

    trunk: nn.Sequential
    heads: nn.ModuleList
    targets: list[str]

    def hidden_layers(self) -> list[nn.Module]:
        """The shared trunk's modules in order: per hidden layer a weight layer, an optional norm, the activation and
        an optional Dropout."""
        return list(self.trunk)

    def head(self, target: str) -> nn.Module:
        return self.heads[self.targets.index(target)]

    def head_target(self, name: str) -> str | None:
        """The target whose head a parameter or module name (`heads.1.weight`) belongs to; None for anything else."""
        parts = name.split(".")
        return self.targets[int(parts[1])] if parts[0] == "heads" and len(parts) > 1 else None

    def weight_layers(self) -> dict[str, str]:
        """{module name: label} of every layer with a weight matrix, trunk first: "layer 1", ..., "head <target>".
        Embedding modules in front of the trunk are not among them."""
        kinds = linear_layers()
        trunk = [f"trunk.{i}" for i, module in enumerate(self.trunk) if isinstance(module, kinds)]
        return {**{name: f"layer {n}" for n, name in enumerate(trunk, start=1)},
                **{f"heads.{i}": f"head {target}" for i, target in enumerate(self.targets)}}

"""Which modules hold a layer's weight matrix, for code that walks a model's layers (diagnostics, train.freeze)."""

from __future__ import annotations

import sys

from torch import nn


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

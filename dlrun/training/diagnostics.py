"""Training health, once per epoch: gradient and weight norms, update-to-weight ratios and dead ReLU units per layer.

The numbers go to diagnostics.csv (one row per epoch and layer); `diagnose` turns them into plain-words warnings.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch
from torch import nn

from dlrun.model.layers import linear_layers  # nn.Linear and TabM's ensemble layers
from dlrun.training.state import Callback, TrainState
from dlrun.core.io import write_csv
from dlrun.model.mlp import MLP

# Rows of the fixed batches: enough for a stable estimate, small enough to cost a fraction of one epoch.
DIAGNOSTIC_ROWS = 256
# Activations whose units can stop responding: a unit whose input is negative for every row passes (almost) nothing.
RELU_FAMILY = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU)
COLUMNS = ["epoch", "layer", "grad_norm", "weight_norm", "update_ratio", "dead_fraction"]

# Warning thresholds. A unit "never fires" when its input is <= 0 on every row of the validation batch.
DEAD_WARN = 0.5
# Gradients vanish when the first layer's gradient is this much smaller than the largest layer's (median over epochs).
VANISH_RATIO = 1e-3
# Gradients explode when a layer's gradient norm exceeds this (losses on scaled targets keep healthy norms near 0.01-10).
EXPLODE_NORM = 1e3


class Diagnostics(Callback):
    """Per layer and epoch: gradient norm on a fixed training batch, weight norm, how far the weights moved during
    the epoch relative to their size, and the fraction of ReLU-family units that never fire on a fixed validation batch.

    Costs one extra forward/backward per epoch. It reads parameters through `named_parameters()` and computes its
    gradients with `torch.autograd.grad`, so the model's `.grad`, its mode, the random state and therefore the training
    results are exactly as without it (eval mode: no dropout draws, no batch-norm statistics updated).
    """

    def __init__(self, path: Path, train_X: torch.Tensor, train_y: dict[str, torch.Tensor], val_X: torch.Tensor,
                 loss: Callable[[dict[str, torch.Tensor], dict[str, torch.Tensor]], torch.Tensor], *, seed: int):
        self.path = Path(path)
        # Fixed rows drawn from the run's seed with their own generator: the global RNG that dropout uses is untouched.
        rows = torch.randperm(len(train_X), generator=torch.Generator().manual_seed(seed))[:DIAGNOSTIC_ROWS].to(train_X.device)
        self.train_X, self.train_y = train_X[rows], {t: v[rows] for t, v in train_y.items()}
        # A small validation split is topped up with training rows: on a handful of rows many healthy units are
        # silent by chance, and a unit silent on the training rows too gets no gradient, dead indeed.
        self.val_X = torch.cat([val_X[:DIAGNOSTIC_ROWS], self.train_X[:max(DIAGNOSTIC_ROWS - len(val_X), 0)]])
        self.loss = loss
        self.rows: list[dict[str, Any]] = []
        self.start_weights: dict[str, torch.Tensor] = {}

    def on_epoch_begin(self, state: TrainState) -> None:
        self.start_weights = {name: w.detach().clone() for name, w in layer_weights(state.model).values()}

    def on_epoch_end(self, state: TrainState, row: dict[str, float]) -> None:
        model = state.model
        layers = layer_weights(model)
        was_training = model.training
        model.eval()
        try:
            grads = self._gradients(model, layers)
            dead = self._dead_fractions(model)
        finally:
            model.train(was_training)
        nan = torch.tensor(float("nan"), device=self.train_X.device)
        stats = []  # (n_layers, 4): collected on the device and read back once
        for label, (name, weight) in layers.items():
            w = weight.detach()
            start = self.start_weights.get(name)
            update = (w - start).norm() / start.norm().clamp_min(1e-12) if start is not None else nan
            stats.append(torch.stack([grads.get(name, nan), w.norm(), update, dead.get(label, nan)]))
        values = torch.stack(stats).double().cpu().tolist()
        for label, (grad_norm, weight_norm, update_ratio, dead_fraction) in zip(layers, values):
            self.rows.append({"epoch": state.epoch, "layer": label, "grad_norm": grad_norm, "weight_norm": weight_norm,
                              "update_ratio": update_ratio, "dead_fraction": dead_fraction})
        write_csv(self.path, pd.DataFrame(self.rows, columns=COLUMNS), durable=False)

    def _gradients(self, model: nn.Module, layers: dict[str, tuple[str, nn.Parameter]]) -> dict[str, torch.Tensor]:
        """Gradient norm of each trainable layer weight; autograd.grad returns them without touching `.grad`."""
        trainable = [(name, w) for name, w in layers.values() if w.requires_grad]
        if not trainable:
            return {}
        with torch.enable_grad():
            loss = self.loss(model(self.train_X), self.train_y)
            grads = torch.autograd.grad(loss, [w for _, w in trainable], allow_unused=True)
        return {name: g.norm() if g is not None else torch.zeros((), device=loss.device) for (name, _), g in zip(trainable, grads)}

    @torch.no_grad()
    def _dead_fractions(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Fraction of units of each ReLU-family activation whose input is <= 0 on every row of the validation batch."""
        dead: dict[str, torch.Tensor] = {}
        hooks = []
        for label, activation in relu_activations(model).items():
            def record(module, inputs, output, label=label):
                dead[label] = (inputs[0] <= 0).all(dim=0).float().mean()
            hooks.append(activation.register_forward_hook(record))
        try:
            if hooks and len(self.val_X):
                model(self.val_X)
        finally:
            for hook in hooks:
                hook.remove()
        return dead

    def state_dict(self) -> dict:
        return {"rows": self.rows}

    def load_state_dict(self, saved: dict) -> None:
        self.rows = list(saved.get("rows", []))


def layer_weights(model: MLP) -> dict[str, tuple[str, nn.Parameter]]:
    """{"layer 1": (parameter name, weight), ..., "head <target>": ...}: each Linear's weight, trunk first."""
    params = dict(model.named_parameters())
    labels = model.weight_layers()
    return {label: (f"{name}.weight", params[f"{name}.weight"]) for name, label in labels.items()}


def relu_activations(model: nn.Module) -> dict[str, nn.Module]:
    """{"layer k": activation module} for the ReLU-family activation that follows the k-th trunk weight layer."""
    found, layer = {}, 0
    for module in model.hidden_layers():
        if isinstance(module, linear_layers()):
            layer += 1
        elif isinstance(module, RELU_FAMILY) and layer:
            found[f"layer {layer}"] = module
    return found


def diagnose(frame: pd.DataFrame, activation: str = "relu") -> list[str]:
    """Plain-words warnings from diagnostics.csv: dying ReLUs, vanishing or exploding gradients."""
    if frame.empty:
        return []
    warnings = []
    last = frame[frame["epoch"] == frame["epoch"].max()]
    for _, row in last.iterrows():
        dead = row["dead_fraction"]
        if dead == dead and dead >= DEAD_WARN:
            advice = "try leaky_relu or a smaller learning rate" if activation == "relu" else "try a smaller learning rate"
            name = "ReLU" if activation == "relu" else activation
            warnings.append(f"{row['layer']}: {dead:.0%} of {name} units never fire; {advice}")
    # A frozen layer has no gradient (NaN) but finite weights; a diverged one has infinite gradients or NaN weights.
    broken = frame[~frame["weight_norm"].map(math.isfinite) | frame["grad_norm"].map(math.isinf)]
    if not broken.empty:
        first = broken.iloc[0]
        warnings.append(f"gradients exploded: {first['layer']} has a non-finite gradient or weight at epoch "
                        f"{int(first['epoch'])}; lower optimizer.lr or set train.grad_clip")
    else:
        big = frame[frame["grad_norm"] > EXPLODE_NORM]
        if not big.empty:
            worst = big.loc[big["grad_norm"].idxmax()]
            warnings.append(f"gradients explode: {worst['layer']} has a gradient norm of {worst['grad_norm']:.3g} at epoch "
                            f"{int(worst['epoch'])}; lower optimizer.lr or set train.grad_clip")
    warnings.extend(_vanishing(frame))
    return warnings


def _vanishing(frame: pd.DataFrame) -> list[str]:
    """The first layer learns nothing when its gradient is orders of magnitude below the largest layer's."""
    trunk = frame[frame["layer"].str.startswith("layer ")]
    grads = trunk.pivot_table(index="epoch", columns="layer", values="grad_norm", aggfunc="first")
    if "layer 1" not in grads or grads.shape[1] < 2:
        return []
    ratio = (grads["layer 1"] / grads.max(axis=1)).median()
    if not ratio == ratio or ratio >= VANISH_RATIO:
        return []
    return [f"gradients vanish: layer 1 gets gradients {1 / max(ratio, 1e-300):.0e} times smaller than the largest "
            "layer's; try relu or leaky_relu, kaiming init, model.norm: batch, or fewer layers"]

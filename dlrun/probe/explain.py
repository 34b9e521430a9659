"""`dlrun explain`: the curriculum's ideas drawn from the real code: activation functions and their gradients, and
what dropout does to a trained model's outputs in train mode versus eval mode."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dlrun.run import layout
from dlrun.folds.predictor import open_predictor
from dlrun.config.schema import ModelConfig
from dlrun.data.load import load_dataset
from dlrun.core.errors import ConfigError, RunError
from dlrun.data.tensors import to_split
from dlrun.model.activations import ACTIVATIONS
from dlrun.model.forward import forward_split

DEFAULT_SLOPE = ModelConfig.model_fields["leaky_relu_slope"].default


@dataclass(frozen=True)
class ActivationCurves:
    path: Path
    names: list[str]
    max_gradient: dict[str, float]  # the steepest slope of each activation on the plotted range


def explain_activations(output: Path | str = "activations.png", slope: float = DEFAULT_SLOPE) -> ActivationCurves:
    """Every activation `model.activation` accepts, with its derivative (by autograd, from the modules the MLP uses)."""
    if not 0 < slope < 1:
        raise ConfigError(f"--slope must be between 0 and 1 (as model.leaky_relu_slope), got {slope}")
    from dlrun.run.plots import save_figure

    fig, steepest = activations_figure(slope)
    output = Path(output)
    save_figure(fig, output)
    return ActivationCurves(output, list(ACTIVATIONS), steepest)


def activations_figure(slope: float = DEFAULT_SLOPE):
    """(Figure, steepest slope per activation): one panel per activation, the function and its derivative."""
    from dlrun.run.plots import new_figure

    x = torch.linspace(-5, 5, 1001, requires_grad=True)
    n_cols = 3
    fig = new_figure(11, 3.3 * -(-len(ACTIVATIONS) // n_cols))
    axes = fig.subplots(-(-len(ACTIVATIONS) // n_cols), n_cols, squeeze=False).ravel()
    steepest = {}
    for ax, (name, activation) in zip(axes, ACTIVATIONS.items()):
        module = activation(slope) if name == "leaky_relu" else activation()
        y = module(x)
        (dy,) = torch.autograd.grad(y.sum(), x)  # elementwise functions: d(sum)/dx_i = f'(x_i)
        steepest[name] = float(dy.max())
        ax.plot(x.detach(), y.detach(), label=f"{name}(x)", color="tab:blue")
        ax.plot(x.detach(), dy, label=f"derivative (max {steepest[name]:.3g})", color="tab:orange", linestyle="--")
        ax.axhline(0, color="black", linewidth=0.6)
        ax.axvline(0, color="black", linewidth=0.6)
        ax.set_title(f"{name} (slope {slope:g} below 0)" if name == "leaky_relu" else name, fontsize="medium")
        ax.set_xlabel("input x")
        ax.set_ylim(-1.5, 3)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize="small")
    for ax in axes[len(ACTIVATIONS):]:
        ax.set_visible(False)
    fig.suptitle("Activation functions (solid) and their gradients (dashed): a gradient near 0 passes no learning signal")
    return fig, steepest


@dataclass(frozen=True)
class DropoutRow:
    row: int  # position in the validation split
    truth: str
    eval_value: float
    train_mean: float
    train_std: float
    train_min: float
    train_max: float


@dataclass(frozen=True)
class DropoutDemo:
    run_dir: Path
    target: str
    quantity: str  # what the values are, with units
    dropout: list[float]  # per hidden layer
    n_passes: int
    eval_repeatable: bool  # two eval-mode passes gave identical outputs
    rows: list[DropoutRow]
    path: Path


def explain_dropout(run_dir: Path | str, n_rows: int = 8, n_passes: int = 30, output: Path | str | None = None,
                    device: str | None = None) -> DropoutDemo:
    """Run real validation rows through the run's best model `n_passes` times with dropout on (train mode), and twice
    in eval mode: train-mode outputs scatter, eval-mode outputs are one fixed value."""
    if not 1 <= n_rows <= 100 or not 2 <= n_passes <= 1000:
        raise ConfigError(f"--rows must be 1..100 and --passes 2..1000, got {n_rows} and {n_passes}")
    predictor = open_predictor(run_dir, device)
    if predictor.is_ensemble:  # dropout lives inside each member; their average has none of its own
        raise RunError(f"{run_dir} is an ensemble of {len(predictor.members)} fold models: explain one of them, e.g. "
                       f"dlrun explain dropout {predictor.members[0].run_dir}")
    run = predictor.members[0]
    frame = load_dataset(run.cfg.data, run.cfg.seed, tasks=run.prep.tasks).part("val").head(n_rows)
    rows = to_split(run.prep, frame, run.device)
    target = run.prep.targets[0]
    classification = run.prep.is_classification(target)
    first, second = forward_split(run.model, rows.X)[target], forward_split(run.model, rows.X)[target]
    predicted = first.argmax(dim=1) if classification else None

    def as_values(out: torch.Tensor) -> np.ndarray:  # (n_rows,) in the units a user reads
        if classification:
            return out.float().softmax(dim=1).gather(1, predicted[:, None]).squeeze(1).cpu().numpy()
        return run.prep.to_original_units(target, out.squeeze(1).double().cpu().numpy())

    passes = np.stack([as_values(out) for out in _dropout_passes(run.model, rows.X, target, n_passes, run.cfg.seed)])
    eval_values = as_values(first)
    unit = run.cfg.data.units.get(target)
    quantity = (f"probability of the class eval mode predicts ({target})" if classification
                else f"predicted {target}" + (f" ({unit})" if unit else ""))
    result_rows = [DropoutRow(int(i), str(frame[target].iloc[i]), float(eval_values[i]), float(passes[:, i].mean()),
                              float(passes[:, i].std()), float(passes[:, i].min()), float(passes[:, i].max()))
                   for i in range(len(frame))]
    path = Path(output) if output else Path(run_dir) / layout.DROPOUT_PLOT
    from dlrun.run.plots import save_figure

    save_figure(dropout_figure(passes, eval_values, quantity, run.cfg.model.layer_dropout()), path)
    return DropoutDemo(Path(run_dir), target, quantity, run.cfg.model.layer_dropout(), n_passes,
                       bool(torch.equal(first, second)), result_rows, path)


@torch.inference_mode()
def _dropout_passes(model: nn.Module, X: torch.Tensor, target: str, n_passes: int, seed: int) -> list[torch.Tensor]:
    """Outputs with only the Dropout layers in train mode: batch norm keeps its running statistics, so every difference
    between passes is dropout's. Seeded and forked: repeatable, and the caller's random state is left alone."""
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    cuda = [X.device.index if X.device.index is not None else torch.cuda.current_device()] if X.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        for module in dropouts:
            module.train()
        try:
            return [model(X)[target] for _ in range(n_passes)]
        finally:
            for module in dropouts:
                module.eval()


def dropout_figure(passes: np.ndarray, eval_values: np.ndarray, quantity: str, dropout: list[float]):
    """passes (n_passes, n_rows) in train mode as dots per row, the eval-mode value (n_rows,) as a bar."""
    from dlrun.run.plots import new_figure

    n_passes, n_rows = passes.shape
    fig = new_figure(max(6.4, 0.8 * n_rows + 2), 4.2)
    ax = fig.add_subplot()
    jitter = np.random.default_rng(0).uniform(-0.15, 0.15, passes.shape)  # spreads equal dots sideways, for display
    ax.scatter(np.arange(n_rows) + jitter, passes, s=12, alpha=0.5, color="tab:blue",
               label=f"train mode: {n_passes} passes, dropout on")
    ax.hlines(eval_values, np.arange(n_rows) - 0.3, np.arange(n_rows) + 0.3, linewidths=2.5, color="tab:red",
              label="eval mode: every pass identical")
    ax.set_xticks(range(n_rows), [f"row {i + 1}" for i in range(n_rows)])
    ax.set_xlabel("validation row")
    ax.set_ylabel(quantity)
    ax.grid(alpha=0.3, axis="y")
    fig.legend(loc="outside lower center", ncol=2, fontsize="small")
    rates = ", ".join(f"{p:g}" for p in dropout)
    ax.set_title(f"Dropout {rates} per hidden layer, real validation rows:\noutputs vary in train mode, are fixed in eval mode",
                 fontsize="medium")
    return fig

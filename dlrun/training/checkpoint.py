"""The checkpoint format: built, saved, loaded and restored here and nowhere else."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from dlrun.core.errors import RunError
from dlrun.core.io import write_atomic

if TYPE_CHECKING:
    from dlrun.training.callbacks import TrainState


CHECKPOINT_VERSION = 1


def save_checkpoint(path: Path, state: "TrainState", include_optimizer: bool, durable: bool = True) -> None:
    """An explicit dict of state_dicts and plain values, loadable with weights_only=True."""
    checkpoint = {
        "version": CHECKPOINT_VERSION,
        "epoch": state.epoch,
        "monitor": state.monitor,
        "best_value": state.best_value,
        "best_epoch": state.best_epoch,
        "model": state.model.state_dict(),
    }
    if include_optimizer:  # last.pt: everything `dlrun train --resume` needs to continue exactly
        checkpoint["optimizer"] = state.optimizer.state_dict()
        checkpoint["history"] = state.history
        checkpoint["rng"] = {"torch": torch.get_rng_state(), **{n: g.get_state() for n, g in state.generators.items()}}
        checkpoint["callbacks"] = {type(cb).__name__: cb.state_dict() for cb in state.callbacks}
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    write_atomic(path, lambda fh: fh.write(buffer.getvalue()), mode="wb", durable=durable)


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    if not Path(path).is_file():
        raise RunError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # torch warns about what it refused to unpickle; the error below says it once
            warnings.simplefilter("ignore")
            checkpoint = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file; all mean the same to a user
        raise RunError(f"checkpoint {path} is corrupted or not a dlrun checkpoint ({type(exc).__name__})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("version") != CHECKPOINT_VERSION or "model" not in checkpoint:
        raise RunError(f"checkpoint {path} is not a dlrun checkpoint of version {CHECKPOINT_VERSION}")
    weights = checkpoint["model"]
    if not isinstance(weights, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()):
        raise RunError(f"checkpoint {path} is damaged: its 'model' entry is not a state_dict of named tensors")
    return checkpoint


def load_weights(model: nn.Module, weights: dict[str, torch.Tensor], path: Path) -> None:
    """Load a checkpoint's state_dict into `model`; a checkpoint built for another model is a RunError."""
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError, KeyError) as exc:
        raise RunError(f"{path} does not match the run's model ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


def restore(state: TrainState, checkpoint: dict[str, Any]) -> None:
    """Put optimizer, history, best epoch, random generators and callback state back as they were saved."""
    state.optimizer.load_state_dict(checkpoint["optimizer"])
    state.epoch, state.history = checkpoint["epoch"], list(checkpoint["history"])
    state.best_value, state.best_epoch = checkpoint["best_value"], checkpoint["best_epoch"]
    state.best_state = checkpoint["best_model"]
    torch.set_rng_state(checkpoint["rng"]["torch"])  # dropout draws from the global generator
    for name, generator in state.generators.items():
        generator.set_state(checkpoint["rng"][name])
    for callback in state.callbacks:
        callback.load_state_dict(checkpoint["callbacks"].get(type(callback).__name__, {}))

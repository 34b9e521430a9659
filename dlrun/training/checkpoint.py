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
    from dlrun.training.state import TrainState


CHECKPOINT_VERSION = 1
# What last.pt holds beyond best.pt's entries: everything `--resume` needs to continue exactly as if never stopped.
RESUME_STATE = ("epoch", "best_value", "best_epoch", "optimizer", "history", "rng", "callbacks")
# Also in last.pt since the best weights travel with it (a kill between the last.pt and best.pt writes of an improving
# epoch must not leave a resume serving another epoch's weights) and the stop decision is kept; older runs lack them.
BEST_WEIGHTS, STOP = "best_model", "stop"
# A streamed run's position in its table: epochs and training rows read, and the rows the table held (stream_loop.py).
STREAM = "stream"


def save_checkpoint(path: Path, state: "TrainState", include_optimizer: bool, durable: bool = True) -> None:
    """last.pt (`include_optimizer`) or best.pt, saved atomically; loadable with weights_only=True."""
    if include_optimizer:
        checkpoint = _last(state)
    else:
        checkpoint = _best(state.epoch, state.monitor, state.best_value, state.best_epoch, state.model.state_dict())
    _write(path, checkpoint, durable)


def _best(epoch: int, monitor: str, best_value: float | None, best_epoch: int, weights: dict[str, torch.Tensor]) -> dict[str, Any]:
    """best.pt: an explicit dict of plain values and the weights' state_dict."""
    return {"version": CHECKPOINT_VERSION, "epoch": epoch, "monitor": monitor, "best_value": best_value,
            "best_epoch": best_epoch, "model": weights}


def _last(state: "TrainState") -> dict[str, Any]:
    """last.pt: best.pt's entries for this epoch's weights, then what a resume restores."""
    return {
        **_best(state.epoch, state.monitor, state.best_value, state.best_epoch, state.model.state_dict()),
        "optimizer": state.optimizer.state_dict(),
        "history": state.history,
        "rng": {"torch": torch.get_rng_state(), **{n: g.get_state() for n, g in state.generators.items()}},
        "callbacks": {type(cb).__name__: cb.state_dict() for cb in state.callbacks},
        BEST_WEIGHTS: state.best_state,
        STOP: {"stop": state.stop, "reason": state.stop_reason},
        **({STREAM: state.stream} if state.stream is not None else {}),
    }


def _write(path: Path, checkpoint: dict[str, Any], durable: bool) -> None:
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


def resume_point(last: Path, best: Path, device: torch.device | str = "cpu") -> dict[str, Any] | None:
    """last.pt's training state, with the best epoch's weights under "best_model"; None when there is no last.pt (the
    run was stopped before its first epoch ended: it starts again from the first).

    best.pt is made to agree with last.pt first: a kill between the two writes of an improving epoch leaves best.pt an
    epoch behind the best epoch last.pt records, and the weights last.pt carries are then written to it.
    """
    if not Path(last).is_file():
        return None
    checkpoint = load_checkpoint(last, device)
    missing = [key for key in RESUME_STATE if key not in checkpoint]
    if missing:
        raise RunError(f"{last} holds no training state to resume from (no {', '.join(missing)})")
    if BEST_WEIGHTS not in checkpoint:  # written before last.pt carried the best weights: best.pt holds them
        checkpoint[BEST_WEIGHTS] = load_checkpoint(best, device)["model"]
        return checkpoint
    try:
        saved = load_checkpoint(best, device)
        agrees = (saved["epoch"], saved.get("best_epoch")) == (checkpoint["best_epoch"], checkpoint["best_epoch"])
    except RunError:  # missing or damaged: last.pt has what it should hold
        agrees = False
    if not agrees:
        _write(best, _best(checkpoint["best_epoch"], checkpoint["monitor"], checkpoint["best_value"], checkpoint["best_epoch"],
                           checkpoint[BEST_WEIGHTS]), durable=True)
    return checkpoint


def restore(state: TrainState, checkpoint: dict[str, Any]) -> None:
    """Put optimizer, history, best epoch, random generators, callback state and the stop decision back as saved."""
    state.optimizer.load_state_dict(checkpoint["optimizer"])
    state.epoch, state.history = checkpoint["epoch"], list(checkpoint["history"])
    state.best_value, state.best_epoch = checkpoint["best_value"], checkpoint["best_epoch"]
    state.best_state = checkpoint[BEST_WEIGHTS]
    stop = checkpoint.get(STOP, {"stop": False, "reason": ""})  # older last.pt: the loop decides again
    state.stop, state.stop_reason = bool(stop["stop"]), str(stop["reason"])
    state.stream = checkpoint.get(STREAM)
    torch.set_rng_state(checkpoint["rng"]["torch"])  # dropout draws from the global generator
    for name, generator in state.generators.items():
        generator.set_state(checkpoint["rng"][name])
    for callback in state.callbacks:
        callback.load_state_dict(checkpoint["callbacks"].get(type(callback).__name__, {}))

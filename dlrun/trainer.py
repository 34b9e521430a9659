"""Stage 4: the training loop, readable top to bottom. Everything optional is a callback (see callbacks.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from dlrun.augment import batch_augment
from dlrun.callbacks import Callback, EarlyStopping, TrainState
from dlrun.config import Config, OptimizerConfig
from dlrun.fast_step import FastStep, unsupported
from dlrun.losses import Criterion
from dlrun.metrics import flatten, is_maximised, score
from dlrun.preprocess import Preprocessor
from dlrun.schedule import LRSchedule

# Rows per forward pass when scoring a whole split; bounds memory on large tables.
EVAL_CHUNK_ROWS = 65_536


@dataclass
class Split:
    """One split's rows as tensors on the training device."""

    X: torch.Tensor  # (n_rows, n_features) float32
    y: dict[str, torch.Tensor]  # target -> (n_rows,) int64 class index or float32 scaled value

    def __len__(self) -> int:
        return self.X.shape[0]


def make_optimizer(model: nn.Module, cfg: OptimizerConfig, device: torch.device, trunk_lr: float | None = None) -> torch.optim.Optimizer:
    return optimizer_over(param_groups(model, cfg, trunk_lr), cfg, device)


def optimizer_over(groups: list[dict[str, Any]], cfg: OptimizerConfig, device: torch.device) -> torch.optim.Optimizer:
    """The configured torch optimizer over parameter groups."""
    # The fused kernels update every parameter in one call instead of one small op per tensor.
    fused = {"fused": True} if device.type in ("cpu", "cuda") else {}
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, **fused)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, **fused)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, **fused)
    return torch.optim.RMSprop(groups, lr=cfg.lr, momentum=cfg.momentum, alpha=cfg.alpha)


def param_groups(model: nn.Module, cfg: OptimizerConfig, trunk_lr: float | None) -> list[dict[str, Any]]:
    """Trainable parameters grouped by weight decay (biases and norms may be exempt) and learning rate (the trunk
    may fine-tune slower than the heads). Frozen parameters are left out."""
    linear_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decay = cfg.weight_decay if cfg.decay_bias_and_norm or id(param) in linear_weights else 0.0
        lr = trunk_lr if trunk_lr is not None and name.startswith("trunk.") else cfg.lr
        groups.setdefault((decay, lr), []).append(param)
    return [{"params": params, "weight_decay": decay, "lr": lr} for (decay, lr), params in groups.items()]


class AutogradStep:
    """`step(X, y) -> loss` through autograd and torch.optim: the general path, for any model and config."""

    def __init__(self, model: nn.Module, criterion: Criterion, optimizer: torch.optim.Optimizer, clip: float | None):
        self.model, self.criterion, self.optimizer, self.clip = model, criterion, optimizer, clip
        self.params = [p for p in model.parameters() if p.requires_grad]

    def __call__(self, X: torch.Tensor, y: dict[str, torch.Tensor]) -> torch.Tensor:
        return train_step(self.model, X, y, self.criterion, self.optimizer, self.params, self.clip)


def make_step(model: nn.Module, cfg: Config, criterion: Criterion, device: torch.device) -> FastStep | AutogradStep:
    """The run's training step: the hand-written fast path when it covers the model and config, else autograd.
    Both hold the optimizer as `.optimizer` and compute the same step (tests/test_fast_step.py)."""
    groups = param_groups(model, cfg.optimizer, cfg.train.trunk_lr)
    if unsupported(model, cfg) is None:
        return FastStep(model, criterion, groups, cfg.optimizer, cfg.train.grad_clip)
    return AutogradStep(model, criterion, optimizer_over(groups, cfg.optimizer, device), cfg.train.grad_clip)


@torch.inference_mode()
def forward_split(model: nn.Module, X: torch.Tensor) -> dict[str, torch.Tensor]:
    """Model outputs for every row, in eval mode (dropout off), chunked to bound memory."""
    was_training = model.training
    model.eval()
    chunks = [model(X[start : start + EVAL_CHUNK_ROWS]) for start in range(0, max(len(X), 1), EVAL_CHUNK_ROWS)]
    model.train(was_training)
    return {target: torch.cat([chunk[target] for chunk in chunks]) for target in chunks[0]}


def fit(model: nn.Module, train: Split, val: Split, prep: Preprocessor, cfg: Config, device: torch.device,
        callbacks: Sequence[Callback] = (), resume: dict[str, Any] | None = None) -> TrainState:
    """Train `model` in place; returns the final state with the best epoch's weights loaded.

    `resume` is a last.pt checkpoint (with `best_model` added from best.pt): training continues after its epoch
    exactly as if it had never stopped. The model must already hold the checkpoint's weights.
    """
    stopping = cfg.train.early_stopping
    monitor = stopping.metric if stopping else "val_loss"
    maximise = is_maximised(monitor) if not stopping or stopping.mode == "auto" else stopping.mode == "max"
    criterion = Criterion(prep, cfg.train, train.y)
    step = make_step(model, cfg, criterion, device)  # re-points a fast step's parameters: before anything copies them
    optimizer = step.optimizer
    shuffler = torch.Generator().manual_seed(cfg.seed)
    augment = batch_augment(cfg.augment, len(prep.numeric_), cfg.seed, device)  # None when augmentation is off
    batch_size, n_rows = cfg.data.batch_size, len(train)
    if cfg.model.norm == "batch" and n_rows % batch_size == 1 and n_rows > 1:
        n_rows -= 1  # batch norm cannot train on a final batch of one row; a different row sits out each epoch
    # Rows in each batch, for the epoch's row-weighted mean loss; only the last batch may be short.
    batch_rows = torch.tensor([min(batch_size, n_rows - start) for start in range(0, n_rows, batch_size)],
                              dtype=torch.float32, device=device)

    callbacks = [LRSchedule(cfg.scheduler, cfg.train.epochs)] + ([EarlyStopping(stopping.patience)] if stopping else []) + list(callbacks)
    generators = {"shuffle": shuffler, **({"augment": augment.generator} if augment is not None else {})}
    state = TrainState(model, optimizer, monitor, maximise, generators=generators, callbacks=callbacks)
    if resume is not None:
        restore(state, resume)

    for callback in callbacks:
        callback.on_train_begin(state)
    for epoch in range(state.epoch + 1, cfg.train.epochs + 1):
        started = time.perf_counter()
        state.epoch = epoch
        for callback in callbacks:
            callback.on_epoch_begin(state)
        model.train()
        # One gather per epoch, then contiguous slices: cheaper than indexing every batch.
        order = torch.randperm(len(train), generator=shuffler)[:n_rows].to(device) if cfg.data.shuffle else None
        X = train.X[order] if order is not None else train.X
        y = {t: v[order] for t, v in train.y.items()} if order is not None else train.y
        batch_losses = []  # kept on the device and combined once: no host sync per batch
        for start in range(0, n_rows, batch_size):
            X_batch = X[start : start + batch_size]  # (B, n_features)
            if augment is not None:  # training batches only: validation below is scored on clean rows
                X_batch = augment(X_batch)
            y_batch = {t: v[start : start + batch_size] for t, v in y.items()}
            batch_losses.append(step(X_batch, y_batch))

        val_outputs = forward_split(model, val.X)
        row = {
            "epoch": epoch,
            "train_loss": float(torch.stack(batch_losses) @ batch_rows / n_rows),
            "val_loss": float(criterion(val_outputs, val.y)),
            **flatten(score(val_outputs, val.y, prep), "val"),
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - started,
        }
        state.history.append(row)
        _track_best(state, row, stopping.min_delta if stopping else 0.0, keep_last=stopping is None)
        for callback in callbacks:
            callback.on_epoch_end(state, row)
        if state.stop:
            break

    model.load_state_dict(state.best_state)
    for callback in callbacks:
        callback.on_train_end(state)
    return state


def train_step(model: nn.Module, X: torch.Tensor, y: dict[str, torch.Tensor], criterion: Criterion,
               optimizer: torch.optim.Optimizer, params: list[torch.Tensor], clip: float | None) -> torch.Tensor:
    """One optimisation step on one batch through autograd; returns the batch loss, detached and on the device."""
    loss = criterion(model(X), y)
    for p in params:  # what zero_grad(set_to_none=True) does, without its per-call overhead
        p.grad = None
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(params, clip)
    optimizer.step()
    return loss.detach()


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


def _track_best(state: TrainState, row: dict[str, Any], min_delta: float, keep_last: bool) -> None:
    """Remember the best epoch's weights; without early stopping the latest epoch is the one kept."""
    value = row[state.monitor]
    if state.best_value is None or keep_last:
        state.improved = True
    elif state.maximise:
        state.improved = value > state.best_value + min_delta
    else:
        state.improved = value < state.best_value - min_delta
    if state.improved:
        state.best_value, state.best_epoch = value, state.epoch
        state.best_state = {name: tensor.detach().clone() for name, tensor in state.model.state_dict().items()}

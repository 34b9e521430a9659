"""Stage 4: the training loop, readable top to bottom. Everything optional is a callback (see callbacks.py)."""

from __future__ import annotations

import time
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from dlrun.training.augment import batch_augment
from dlrun.training.callbacks import EarlyStopping
from dlrun.training.state import Callback, TrainState
from dlrun.config.schema import Config
from dlrun.data.tensors import Split
from dlrun.model.forward import forward_split
from dlrun.training.checkpoint import restore
from dlrun.training.distributed import SINGLE, Shard, World, data_parallel
from dlrun.training.step import make_step
from dlrun.training.losses import Criterion
from dlrun.metrics.names import flatten, is_maximised
from dlrun.metrics.score import score
from dlrun.data.preprocess import Preprocessor
from dlrun.training.schedule import LRSchedule


def fit(model: nn.Module, train: Split, val: Split, prep: Preprocessor, cfg: Config, device: torch.device,
        callbacks: Sequence[Callback] = (), resume: dict[str, Any] | None = None, world: World = SINGLE) -> TrainState:
    """Train `model` in place; returns the final state with the best epoch's weights loaded.

    `resume` is a last.pt checkpoint (with `best_model` added from best.pt): training continues after its epoch
    exactly as if it had never stopped. The model must already hold the checkpoint's weights.
    `world`: the processes training this model together under torchrun (training/distributed.py).
    """
    stopping = cfg.train.early_stopping
    monitor = stopping.metric if stopping else "val_loss"
    maximise = is_maximised(monitor) if not stopping or stopping.mode == "auto" else stopping.mode == "max"
    criterion = Criterion(prep, cfg.train, train.y)
    # make_step re-points a fast step's parameters: before anything copies them. Under torchrun it averages gradients.
    step = data_parallel(make_step(model, cfg, criterion, device), world)
    optimizer = step.optimizer
    shuffler = torch.Generator().manual_seed(cfg.seed)
    augment = batch_augment(cfg.augment, len(prep.numeric_features), cfg.seed, device)  # None when augmentation is off
    # This process's rows per step and per epoch (all of them when alone, bar a last batch of one row that batch norm
    # cannot train on: a different row sits out each epoch).
    shard = Shard.plan(len(train), cfg.data.batch_size, world, min_batch=2 if cfg.model.norm == "batch" else 1)
    batch_size, n_rows = shard.batch_size, shard.n_rows
    # Rows in each batch, for the epoch's row-weighted mean loss; only the last batch may be short.
    batch_rows = torch.tensor([min(batch_size, n_rows - start) for start in range(0, n_rows, batch_size)],
                              dtype=torch.float32, device=device)

    callbacks = [LRSchedule(cfg.scheduler, cfg.train.epochs)] + ([EarlyStopping(stopping.patience)] if stopping else []) + list(callbacks)
    generators = {"shuffle": shuffler, **({"augment": augment.generator} if augment is not None else {})}
    state = TrainState(model, optimizer, monitor, maximise, generators=generators, callbacks=callbacks)
    if resume is not None:
        restore(state, resume)

    for started in begin_epochs(model, state, cfg.train.epochs, callbacks):
        epoch = state.epoch
        # One gather per epoch, then contiguous slices: cheaper than indexing every batch.
        order = shard.rows(torch.randperm(len(train), generator=shuffler) if cfg.data.shuffle else None, len(train), device)
        X = train.X[order] if order is not None else train.X
        y = {t: v[order] for t, v in train.y.items()} if order is not None else train.y
        batch_losses = [[] for _ in criterion.parts]  # per target, kept on the device and combined once: no host sync per batch
        for start in range(0, n_rows, batch_size):
            X_batch = X[start : start + batch_size]  # (B, n_features)
            if augment is not None:  # training batches only: validation below is scored on clean rows
                X_batch = augment(X_batch)
            y_batch = {t: v[start : start + batch_size] for t, v in y.items()}
            for losses, term in zip(batch_losses, step(X_batch, y_batch)):  # each target's weighted loss term
                losses.append(term)

        val_outputs = forward_split(model, val.X)
        train_terms = [float(torch.stack(losses) @ batch_rows / n_rows) for losses in batch_losses]  # row-weighted means
        val_terms = [float(term) for term in criterion.terms(val_outputs, val.y)]
        row = {
            "epoch": epoch,
            "train_loss": sum(train_terms),
            "val_loss": sum(val_terms),
            **criterion.per_target(train_terms, "train"),
            **criterion.per_target(val_terms, "val"),
            **flatten(score(val_outputs, val.y, prep), "val"),
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - started,
        }
        row = world.agree(row)  # one row on every process: no process decides (best epoch, stopping) alone
        state.history.append(row)
        end_epoch(state, row, stopping, callbacks)
    return end_training(model, state, callbacks)


def begin_epochs(model: nn.Module, state: TrainState, last_epoch: int, callbacks: Sequence[Callback]) -> Iterator[float]:
    """The epochs left to train, each begun (callbacks told, the model in training mode); yields its start time. Stops
    early when state.stop was decided at the end of the previous epoch, or before the kill a resumed run recovers from."""
    for callback in callbacks:
        callback.on_train_begin(state)
    for epoch in range(state.epoch + 1, last_epoch + 1):
        if state.stop:
            return
        started = time.perf_counter()
        state.epoch = epoch
        for callback in callbacks:
            callback.on_epoch_begin(state)
        model.train()
        yield started


def end_epoch(state: TrainState, row: dict[str, Any], stopping: Any, callbacks: Sequence[Callback]) -> None:
    """An epoch's row is in the history: keep the best weights, then let every callback see the epoch."""
    _track_best(state, row, stopping.min_delta if stopping else 0.0, keep_last=stopping is None)
    for callback in callbacks:
        callback.on_epoch_end(state, row)


def end_training(model: nn.Module, state: TrainState, callbacks: Sequence[Callback]) -> TrainState:
    """The best epoch's weights go back into the model, then the callbacks hear that training ended."""
    model.load_state_dict(state.best_state)
    for callback in callbacks:
        callback.on_train_end(state)
    return state


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

"""The training loop for a streamed table (data.in_memory: false): `fit`'s loop with batches read chunk by chunk
through a seeded shuffle buffer instead of sliced from tensors in memory. Callbacks, early stopping, checkpoints and
resume are `fit`'s own; last.pt also records the position in the stream (epochs done, training rows read)."""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from dlrun.config.schema import Config
from dlrun.core.errors import RunError
from dlrun.data.preprocess import Preprocessor
from dlrun.data.tensors import Split
from dlrun.metrics.names import flatten, is_maximised
from dlrun.metrics.score import score
from dlrun.model.forward import forward_split
from dlrun.training.callbacks import EarlyStopping
from dlrun.training.checkpoint import restore
from dlrun.training.loop import begin_epochs, end_epoch, end_training
from dlrun.training.losses import Criterion
from dlrun.training.schedule import LRSchedule
from dlrun.training.shuffle import ShuffleBuffer
from dlrun.training.state import Callback, TrainState
from dlrun.training.step import make_step

Chunks = Callable[[str], Iterable[Split]]  # split name -> its rows as tensors on the device, a chunk at a time


def fit_stream(model: nn.Module, chunks: Chunks, prep: Preprocessor, cfg: Config, device: torch.device,
               class_counts: dict[str, list[int]], callbacks: Sequence[Callback] = (),
               resume: dict[str, Any] | None = None) -> TrainState:
    """Train `model` in place over the streamed training rows; returns the final state, best weights loaded.

    class_counts: training rows per class index of each classification target (for class_weights: balanced)."""
    stopping = cfg.train.early_stopping
    monitor = stopping.metric if stopping else "val_loss"
    maximise = is_maximised(monitor) if not stopping or stopping.mode == "auto" else stopping.mode == "max"
    labels = {t: torch.repeat_interleave(torch.arange(len(n)), torch.tensor(n)).to(device) for t, n in class_counts.items()
              if cfg.train.class_weights == "balanced"}
    criterion = Criterion(prep, cfg.train, labels)
    step = make_step(model, cfg, criterion, device)
    shuffler = torch.Generator().manual_seed(cfg.seed)
    buffer = ShuffleBuffer(cfg.data.stream.shuffle_buffer, cfg.data.batch_size, shuffler if cfg.data.shuffle else None)
    callbacks = [LRSchedule(cfg.scheduler, cfg.train.epochs)] + ([EarlyStopping(stopping.patience)] if stopping else []) + list(callbacks)
    state = TrainState(model, step.optimizer, monitor, maximise, generators={"shuffle": shuffler}, callbacks=callbacks)
    if resume is not None:
        restore(state, resume)
        if state.stream is not None and state.stream["epoch"] != state.epoch:
            raise RunError(f"last.pt records {state.epoch} epochs but a stream position after epoch {state.stream['epoch']}")
    drop_single = cfg.model.norm == "batch"  # batch norm cannot train on a batch of one row

    for started in begin_epochs(model, state, cfg.train.epochs, callbacks):
        epoch = state.epoch
        # per target, summed on the device: no host sync per batch
        loss_sums, n_rows = [torch.zeros((), device=device) for _ in criterion.parts], 0
        for batch in buffer.batches(chunks("train")):
            if drop_single and len(batch) == 1:
                continue
            for k, term in enumerate(step(batch.X, batch.y)):  # each target's weighted loss term
                loss_sums[k] += term * len(batch)
            n_rows += len(batch)
        outputs, truth = scored_split(model, chunks("val"))
        train_terms = [float(total / max(n_rows, 1)) for total in loss_sums]  # row-weighted means
        val_terms = [float(term) for term in criterion.terms(outputs, truth)]
        row = {
            "epoch": epoch,
            "train_loss": sum(train_terms),
            "val_loss": sum(val_terms),
            **criterion.per_target(train_terms, "train"),
            **criterion.per_target(val_terms, "val"),
            **flatten(score(outputs, truth, prep), "val"),
            "lr": state.optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - started,
        }
        state.history.append(row)
        rows_before = state.stream["train_rows_read"] if state.stream else 0
        state.stream = {"epoch": epoch, "train_rows_read": rows_before + n_rows, "rows_per_epoch": n_rows}
        end_epoch(state, row, stopping, callbacks)
    return end_training(model, state, callbacks)


def scored_split(model: nn.Module, chunks: Iterable[Split]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Outputs and targets of every row of a split, chunk by chunk (only these small tensors are kept)."""
    outputs, truth = [], []
    for chunk in chunks:
        outputs.append(forward_split(model, chunk.X))
        truth.append(chunk.y)
    return ({t: torch.cat([o[t] for o in outputs]) for t in outputs[0]},
            {t: torch.cat([y[t] for y in truth]) for t in truth[0]})

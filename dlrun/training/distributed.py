"""Data-parallel training: one model trained by the processes `torchrun` starts, each on its share of the rows.

torchrun starts N copies of `dlrun train` and tells each its place in environment variables (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR/MASTER_PORT); `joined` turns them into a torch.distributed process group (gloo on the CPU,
NCCL on CUDA, one GPU per process on each machine). Every process then holds the whole table and the same model;
what differs is which rows it trains on:

- The global batch is `data.batch_size` rows, as in one process; each of the N processes takes batch_size / N of
  them. Every epoch's seeded permutation is the one a single process draws, and global batch k is cut into N
  consecutive slices, one per process (`Shard`): the processes together train on exactly the batches one process
  would, so a run on N processes follows the one-process run up to floating-point summation order.
- The gradients are averaged over the processes before every optimizer step: the fast step all-reduces its flat
  gradient buffers (one call per parameter group); the autograd step trains through DistributedDataParallel. Every
  process then applies the same update to the same weights, and the replicas stay identical (checked at the end).
- Every process makes the same decisions: the epoch's row (validation metrics, rank 0's; the training loss averaged
  over all) is agreed before the best epoch, early stopping or the schedule read it, so no process stops alone.

Every process runs the same number of batches of the same size (the last global batch is trimmed to a multiple
of N rows; the few rows left out change with each epoch's shuffle), so no collective waits for a process that
has already finished its epoch.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterator

import torch
from torch import nn

from dlrun.config.schema import Config
from dlrun.core.errors import ConfigError, RunError
from dlrun.model.device import resolve_device
from dlrun.training.fast_step import FastStep
from dlrun.training.state import Callback, TrainState

# How long a collective waits for a process that does not come before the run fails (gloo and NCCL): long enough
# for an epoch's validation on a large table, short enough that a wedged run does not hold machines for hours.
COLLECTIVE_TIMEOUT = timedelta(minutes=15)

# gloo reports a process that died as a plain RuntimeError ("... gloo/transport/tcp/pair.cc: Connection closed by peer").
_LOST_PEER = re.compile(r"gloo|Connection closed by peer|NCCL")


@dataclass(frozen=True)
class World:
    """This process's place among the processes training one model (rank 0 of 1 when trained alone)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0  # the process's index on its own machine: its GPU

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes the run directory and prints."""
        return self.rank == 0

    def local_device(self, device: torch.device) -> torch.device:
        """The device this process trains on: its own GPU (cuda:LOCAL_RANK) when the run is on CUDA."""
        return torch.device("cuda", self.local_rank) if self.size > 1 and device.type == "cuda" else device

    def share(self, value: Any) -> Any:
        """Rank 0's `value`, on every process (the others pass anything, usually None). A plain Python value."""
        if self.size == 1:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def agree(self, row: dict[str, Any]) -> dict[str, Any]:
        """The epoch's row every process keeps: rank 0's (its validation metrics, its time) with the training loss
        averaged over the processes (each trained on as many rows, so the mean of their means is the row mean)."""
        if self.size == 1:
            return row
        rows: list[Any] = [None] * self.size
        torch.distributed.all_gather_object(rows, row)
        return {**rows[0], "train_loss": sum(r["train_loss"] for r in rows) / self.size}

    def gather(self, value: Any) -> list[Any]:
        """Every process's `value`, in rank order."""
        if self.size == 1:
            return [value]
        values: list[Any] = [None] * self.size
        torch.distributed.all_gather_object(values, value)
        return values


SINGLE = World()


def launched_world() -> World:
    """The World torchrun's environment describes; a process started any other way trains alone."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    return World(int(os.environ.get("RANK", "0")), size, int(os.environ.get("LOCAL_RANK", "0"))) if size > 1 else SINGLE


@contextmanager
def joined(cfg: Config) -> Iterator[World]:
    """Join torchrun's process group for the `with` block (and leave it after); SINGLE outside torchrun.

    Settings that cannot be split over the processes are refused first, identically on every process, so a bad
    config fails every process alike before any of them waits for another."""
    world = launched_world()
    if world.size == 1 or torch.distributed.is_initialized():  # alone, or inside a group the caller started
        yield world
        return
    if cfg.data.batch_size % world.size:
        raise ConfigError(f"data.batch_size: {cfg.data.batch_size} rows cannot be split evenly over {world.size} "
                          f"processes; use a multiple of {world.size} (it is the global batch: each process trains "
                          "on batch_size / processes rows per step)")
    device = world.local_device(resolve_device(cfg.device))
    if device.type == "cuda":
        if int(os.environ.get("LOCAL_WORLD_SIZE", world.local_rank + 1)) > torch.cuda.device_count():
            raise ConfigError(f"device: torchrun starts {os.environ.get('LOCAL_WORLD_SIZE')} processes on a machine with "
                              f"{torch.cuda.device_count()} GPU(s); start at most one process per GPU (--nproc-per-node)")
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    try:
        torch.distributed.init_process_group(backend, rank=world.rank, world_size=world.size, timeout=COLLECTIVE_TIMEOUT)
    except (RuntimeError, ValueError) as exc:  # DistNetworkError, DistStoreError: the rendezvous address is wrong
        raise RunError(f"process {world.rank} could not join the torchrun group ({backend}): {_first_line(exc)}") from None
    try:
        yield world
    except RuntimeError as exc:  # a collective failed: another process died or was stopped
        if not isinstance(exc, torch.distributed.DistError) and not _LOST_PEER.search(str(exc)):
            raise
        raise RunError(f"process {world.rank} of {world.size} lost the others mid-training ({_first_line(exc)}); "
                       "the first error printed, or torchrun's summary, says which failed") from None
    finally:
        torch.distributed.destroy_process_group()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass(frozen=True)
class Shard:
    """Which of each epoch's shuffled rows this process trains on, in batches of `batch_size` (its share of the
    global batch). Alone it is the whole epoch (bar a last batch of one row that batch norm cannot train on)."""

    world: World
    batch_size: int  # rows per step on this process: the global batch / world size
    n_full: int  # global batches of the full size per epoch
    n_last: int  # rows per process in the shorter last global batch (0: none)

    @classmethod
    def plan(cls, n_rows: int, global_batch: int, world: World, min_batch: int = 1) -> "Shard":
        """Split an epoch of `n_rows` rows; `min_batch` is the smallest batch the model trains on (2 with batch norm)."""
        batch_size = global_batch // world.size
        n_full, remainder = divmod(n_rows, global_batch)
        n_last = remainder // world.size  # the last global batch, trimmed to a multiple of the process count
        if n_last < min_batch and n_full > 0:
            n_last = 0  # a batch norm over one row cannot train: those rows sit out (others each epoch)
        if n_full == 0 and n_last == 0 and world.size > 1:
            raise ConfigError(f"the training split has {n_rows} rows, fewer than the {world.size} processes training on it")
        return cls(world, batch_size, n_full, n_last)

    @property
    def n_rows(self) -> int:
        """Rows this process trains on per epoch (the same on every process)."""
        return self.n_full * self.batch_size + self.n_last

    def rows(self, order: torch.Tensor | None, n_total: int, device: torch.device) -> torch.Tensor | None:
        """This process's rows for the epoch, batch after batch, from the epoch's `order` of all `n_total` rows
        (None: the table's own order). Alone and unshuffled, None: the loop slices the table without a gather."""
        if self.world.size == 1:
            return order[: self.n_rows].to(device) if order is not None else None
        if order is None:
            order = torch.arange(n_total)
        size, rank, full = self.world.size, self.world.rank, self.n_full * self.batch_size * self.world.size
        mine = order[:full].view(self.n_full, size, self.batch_size)[:, rank].reshape(-1)  # slice `rank` of each batch
        last = order[full : full + self.n_last * size].view(size, self.n_last)[rank]
        return torch.cat([mine, last]).to(device)


def data_parallel(step: Any, world: World) -> Any:
    """Make a training step (step.make_step's) average its gradients over the processes before each update."""
    if world.size == 1:
        return step
    if isinstance(step, FastStep):  # the fast step: its gradients are flat buffers, one all-reduce each
        for group in step.optimizer.param_groups:  # the same starting weights everywhere (they are already)
            torch.distributed.broadcast(group["params"][0], src=0)
        step.reduce_grads = lambda grads: _average(grads, world.size)
    else:  # the autograd step: DistributedDataParallel averages in backward; it broadcasts rank 0's weights
        device = next(step.model.parameters()).device
        step.model = nn.parallel.DistributedDataParallel(step.model, device_ids=[device] if device.type == "cuda" else None)
    return step


def _average(grads: list[torch.Tensor], size: int) -> None:
    for grad in grads:  # gloo has no AVG reduction: sum, then divide (the same result on every process)
        torch.distributed.all_reduce(grad)
        grad.div_(size)


def check_replicas(model: nn.Module, world: World) -> None:
    """Every process must end with the same weights (they take the same steps); a difference is a dlrun bug, and
    rank 0's checkpoint would not be the model the processes trained together."""
    if world.size == 1:
        return
    with torch.no_grad():
        values = torch.cat([p.detach().reshape(-1).double().cpu() for p in model.parameters()])
        # A position-weighted sum: equal for identical weights, different for nearly any change to them.
        checksum = float(values @ torch.arange(1, len(values) + 1, dtype=torch.float64)).hex()
    checksums = world.gather(checksum)
    if len(set(checksums)) > 1:
        raise RunError(f"the {world.size} processes ended with different weights (checksums {', '.join(checksums)}); "
                       "this is a dlrun bug: report it with the config")


class AgreeToStop(Callback):
    """Every process stops at the same epoch end: when any of them decided to stop (a callback set `state.stop`) or
    received SIGINT/SIGTERM (`stopper`: run/stop_on_signal.StopOnSignal, its `received`), all do. Runs just before
    the stopper, after every other callback; at the end it checks that the processes hold the same weights."""

    def __init__(self, world: World, stopper: Any):
        self.world, self.stopper = world, stopper

    def on_epoch_end(self, state: TrainState, row: dict[str, float]) -> None:
        decisions = self.world.gather((state.stop, state.stop_reason, self.stopper.received))
        stopping = [(reason, signal) for stop, reason, signal in decisions if stop]
        if stopping and not state.stop:
            state.stop, state.stop_reason = True, stopping[0][0]
        signals = [signal for _, _, signal in decisions if signal is not None]
        if signals and self.stopper.received is None:
            self.stopper.received = signals[0]

    def on_train_end(self, state: TrainState) -> None:
        check_replicas(state.model, self.world)

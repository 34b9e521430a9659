"""Turning the config's device string into a torch.device that exists on this machine."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from dlrun.config.schema import device_spelling_problem
from dlrun.core.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """auto picks the first GPU when there is one; asking for a GPU that is not there is a config error."""
    problem = device_spelling_problem(name)  # `--device` of eval and predict reaches here unvalidated
    if problem:
        raise ConfigError(f"device: {problem}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:  # well spelled, but an index too large for torch to parse
        raise ConfigError(f"device: {name!r} does not exist") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {name!r} was requested but no CUDA GPU is available; use cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device: {name!r} does not exist; this machine has {torch.cuda.device_count()} GPU(s)")
    return device


# Multiply-adds per training step below which one CPU thread beats several: thread start-up and
# synchronisation cost more than a small matmul. Measured on 2 cores: a 10-128-64-1 MLP at batch 64 steps in
# 0.5 ms on one thread and 14 ms on two; a 512-256 MLP at batch 256 (35M MACs) took 0.09 s an epoch on one, 0.46 s on two.
SMALL_STEP_MACS = 200_000_000


def choose_threads(requested: int | None, n_features: int, hidden: list[int], batch_size: int, device: torch.device) -> int:
    """CPU threads for this run: the config's choice, else 1 for small models and all cores for large ones."""
    if requested is not None:
        return requested
    widths = [n_features, *hidden]
    macs_per_row = sum(a * b for a, b in zip(widths, widths[1:]))
    if device.type == "cuda" or batch_size * macs_per_row < SMALL_STEP_MACS:
        return 1
    return torch.get_num_threads()


@contextmanager
def seeded_threads(seed: int, threads: int, device: torch.device) -> Iterator[None]:
    """Run with `threads` CPU threads and torch's global generator seeded, restoring both afterwards.

    Dropout draws from the global generator; forking it lets the seed fix dropout without leaking state."""
    threads_before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            yield
    finally:
        torch.set_num_threads(threads_before)

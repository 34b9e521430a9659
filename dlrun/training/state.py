"""The training loop's extension points: the state callbacks read at each hook, and the Callback base."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class TrainState:
    """What callbacks may read (and `stop` they may set) at each hook."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    monitor: str
    maximise: bool
    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_value: float | None = None
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    improved: bool = False
    stop: bool = False
    stop_reason: str = ""
    generators: dict[str, torch.Generator] = field(default_factory=dict)  # saved in last.pt, for exact resumption
    callbacks: list["Callback"] = field(default_factory=list)
    stream: dict | None = None  # a streamed table's position (stream_loop.py): saved in last.pt, checked on resume


class Callback:
    """Hooks into `fit`; each does nothing unless overridden."""

    def on_train_begin(self, state: TrainState) -> None: ...

    def on_epoch_begin(self, state: TrainState) -> None: ...

    def on_epoch_end(self, state: TrainState, row: dict[str, float]) -> None: ...

    def on_train_end(self, state: TrainState) -> None: ...

    def state_dict(self) -> dict:
        """What a resumed run needs to continue exactly; plain values and tensors only (loaded with weights_only)."""
        return {}

    def load_state_dict(self, saved: dict) -> None: ...

"""Learning-rate schedules, applied per epoch as a callback.

Each schedule is a multiplier of every parameter group's initial lr, so groups with their own lr (a fine-tuned
trunk beside a fresh head) keep their ratio. The closed forms depend only on the epoch, which makes them trivially
resumable; plateau keeps a small explicit state.
"""

from __future__ import annotations

import math

from dlrun.training.state import Callback, TrainState
from dlrun.config.schema import SchedulerConfig

# one_cycle, as in Smith's 1cycle and torch's OneCycleLR defaults: start at peak/25, peak after 30% of the epochs,
# anneal to peak/(25 * 1e4).
ONE_CYCLE_START, ONE_CYCLE_PEAK_AT, ONE_CYCLE_END = 1 / 25, 0.3, 1 / (25 * 1e4)


class LRSchedule(Callback):
    def __init__(self, cfg: SchedulerConfig, total_epochs: int):
        self.cfg = cfg
        self.total_epochs = total_epochs
        self.plateau_scale = 1.0
        self.plateau_best: float | None = None
        self.plateau_bad_epochs = 0

    def on_train_begin(self, state: TrainState) -> None:
        for group in state.optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])

    def on_epoch_begin(self, state: TrainState) -> None:
        factor = self.factor(state.epoch)
        for group in state.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor

    def on_epoch_end(self, state: TrainState, row: dict[str, float]) -> None:
        if self.cfg.name != "plateau" or state.epoch <= self.cfg.warmup_epochs:
            return
        value = row[state.monitor]
        better = self.plateau_best is None or (value > self.plateau_best if state.maximise else value < self.plateau_best)
        if better:
            self.plateau_best, self.plateau_bad_epochs = value, 0
            return
        self.plateau_bad_epochs += 1
        if self.plateau_bad_epochs > self.cfg.patience:
            self.plateau_scale = max(self.plateau_scale * self.cfg.factor, self.cfg.min_lr_ratio)
            self.plateau_bad_epochs = 0

    def factor(self, epoch: int) -> float:
        """Multiplier of the initial lr during `epoch` (1-based)."""
        cfg, warmup = self.cfg, self.cfg.warmup_epochs
        if epoch <= warmup:
            return epoch / (warmup + 1)
        done = epoch - warmup - 1  # epochs of the schedule already completed
        span = max(self.total_epochs - warmup - 1, 1)
        if cfg.name == "step":
            return cfg.gamma ** (done // cfg.step_size)
        if cfg.name == "cosine":
            return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * (1 + math.cos(math.pi * min(done / span, 1.0))) / 2
        if cfg.name == "one_cycle":
            peak = ONE_CYCLE_PEAK_AT * span
            if done < peak:
                return _cosine_between(ONE_CYCLE_START, 1.0, done / peak)
            return _cosine_between(1.0, ONE_CYCLE_END, (done - peak) / max(span - peak, 1e-9))
        if cfg.name == "plateau":
            return self.plateau_scale
        return 1.0

    def state_dict(self) -> dict[str, float | int | None]:
        return {"plateau_scale": self.plateau_scale, "plateau_best": self.plateau_best, "plateau_bad_epochs": self.plateau_bad_epochs}

    def load_state_dict(self, saved: dict) -> None:
        self.plateau_scale = saved.get("plateau_scale", 1.0)
        self.plateau_best = saved.get("plateau_best")
        self.plateau_bad_epochs = saved.get("plateau_bad_epochs", 0)


def _cosine_between(start: float, end: float, progress: float) -> float:
    return end + (start - end) * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0))) / 2

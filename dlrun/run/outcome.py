"""How a training run begins and ends (its first files; completed, its report drawn), and the checks around it, shared by the in-memory runner and the streamed one:
the first files a run writes, the Run a caller gets, the config with inferred targets written in, a failed or interrupted run's status, out of
memory explained, and metrics that diverged."""

from __future__ import annotations

import math
import re
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from dlrun.config.schema import Config, TrainConfig
from dlrun.core.errors import ConfigError, RunError
from dlrun.data.load import Dataset, resolve_units
from dlrun.metrics.health import overfitting
from dlrun.metrics.score import epoch_columns
from dlrun.core.io import write_json
from dlrun.data.preprocess import Preprocessor
from dlrun.run import layout
from dlrun.run.directory import environment, now, write_config
from dlrun.run.record import Resumption, RunRecord, write_record, write_status
from dlrun.run.report import publish
from dlrun.run.tracked import finish_tracking
from dlrun.training.checkpoint import load_weights
from dlrun.training.state import TrainState
from dlrun.training.tracking import Tracking
from dlrun.training.transfer import freeze, prepare_for_finetuning


@dataclass(frozen=True)
class Run:
    """What a finished training run left behind, for a notebook or the CLI's summary."""

    run_dir: Path
    cfg: Config  # resolved: inferred targets, tasks and units written in
    metrics: dict[str, dict[str, dict[str, float]]]  # {split: {target: {metric: value}}}
    best_epoch: int
    epochs_run: int
    monitor: str
    stop_reason: str
    data_summary: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what fine-tuning loaded, re-initialised or froze
    warnings: list[str] = field(default_factory=list)  # training-health warnings, plots or report that failed


def begin_run(run_dir: Path, cfg: Config, device: torch.device, prep: Preprocessor, summary: dict[str, Any],
              notes: list[str], score_test: bool, seconds_preparing: float) -> RunRecord:
    """Write what resuming needs and return the run's record. config.yaml comes first: from it alone a run killed at
    any later moment can be started again in place; then the record (small: a failure can still be written), then
    the fitted preprocessing."""
    record = RunRecord(status="running", started=now(), ended=None, name=cfg.name, data_source=cfg.data.dataset or cfg.data.path,
                       seed=cfg.seed, device=str(device), **environment(), data=summary, notes=notes, score_test=score_test,
                       seconds={"load_and_preprocess": round(seconds_preparing, 3)})
    try:
        write_config(run_dir, cfg)
        write_record(run_dir, record)
        write_json(run_dir / layout.PREPROCESS, prep.to_dict())
    except BaseException as exc:
        record_failure(run_dir, record, exc)
        raise
    return record


def complete_run(run_dir: Path, cfg: Config, record: RunRecord, state: TrainState, metrics: dict[str, Any],
                 seconds: dict[str, float], summary: dict[str, Any], tracking: Tracking | None = None) -> Run:
    """Record a run that trained to its end: completed, why it stopped, and warnings when its numbers say it diverged
    or overfitted; then plots and report.html (never raising: a failure there is one more warning) and the trackers'
    end."""
    stop_reason = state.stop_reason or f"ran all {state.epoch} epochs"
    health = non_finite_warnings(metrics)  # completed, but its numbers say it diverged: said in run.json and output
    overfit = overfitting(state.history)
    record = record.updated(status="completed", ended=now(), epochs_run=state.epoch, best_epoch=state.best_epoch,
                            monitor=state.monitor, best_value=state.best_value, stop_reason=stop_reason, seconds=seconds,
                            warnings=health, overfitting=overfit)
    write_record(run_dir, record)
    published = time.perf_counter()
    warnings = health + ([overfit["message"]] if overfit else []) + publish(run_dir, cfg.model.activation, draw=cfg.report)
    seconds = {**seconds, "plots_and_report": round(time.perf_counter() - published, 3)}
    warnings += finish_tracking(tracking, run_dir, "completed", metrics, state.epoch)
    write_record(run_dir, record.updated(warnings=warnings, seconds=seconds))
    return Run(run_dir, cfg, metrics, state.best_epoch, state.epoch, state.monitor, stop_reason, summary, record.notes,
               warnings)


def completed_before(run_dir: Path, record: RunRecord, overrides: Sequence[str]) -> bool:
    """Whether the run to resume had completed; resuming a completed run without more epochs is a RunError."""
    completed = record.status == "completed"
    if completed and not overrides:
        raise RunError(f"{run_dir} has already completed; train it for more epochs with --set train.epochs=N, or "
                       "train a new run (train.init_from can start from its weights)")
    return completed


def restore_for_resume(model: nn.Module, train: TrainConfig, checkpoint: dict[str, Any] | None, run_dir: Path) -> None:
    """The weights a resumed run continues from: last.pt's, with its layers frozen as before (best.pt's are loaded
    only to check they fit before training resumes); with no epoch ended, a start again as `train` made it."""
    if checkpoint is None:
        prepare_for_finetuning(model, train, layout.BEST_CHECKPOINT)
        return
    freeze(model, train.freeze)
    load_weights(model, checkpoint["best_model"], run_dir / layout.BEST_CHECKPOINT)
    load_weights(model, checkpoint["model"], run_dir / layout.LAST_CHECKPOINT)


def resumed_record(record: RunRecord, checkpoint: dict[str, Any] | None, seconds_preparing: float) -> RunRecord:
    """The record of a run resuming: running again, with when and after which epoch it resumed."""
    resumed = Resumption(at=now(), after_epoch=checkpoint["epoch"] if checkpoint is not None else 0)
    return record.updated(status="running", ended=None, error=None, resumed=[*record.resumed, resumed],
                          seconds={"load_and_preprocess": round(seconds_preparing, 3)})


def record_failure(run_dir: Path, record: RunRecord, exc: BaseException) -> None:
    """Mark the run failed (or interrupted: Ctrl-C, SIGTERM) as far as the disk allows. Never raises: the error that
    failed the run is the one to report."""
    if isinstance(exc, KeyboardInterrupt):
        stopped = record.updated(status="interrupted", ended=now(), error=str(exc) or "interrupted",
                                 **({"epochs_run": exc.epoch} if getattr(exc, "epoch", None) is not None else {}))
    else:
        stopped = record.updated(status="failed", ended=now(), error=f"{type(exc).__name__}: {exc}")
    with suppress(OSError):
        write_status(run_dir, stopped)


def non_finite_warnings(metrics: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """One warning naming every metric that is NaN or infinite: the model diverged (or its inputs overflowed)."""
    bad = [f"{split} {target} {name}" for split, per_target in metrics.items() for target, values in per_target.items()
           for name, value in values.items() if isinstance(value, float) and not math.isfinite(value)]
    if not bad:
        return []
    return [f"metrics are not finite (NaN or infinite): {', '.join(bad)}; training diverged, so this run's model and "
            "numbers cannot be used (lower optimizer.lr, set train.grad_clip, or check the data for huge values)"]


@contextmanager
def out_of_memory_explained(cfg: Config, device: torch.device) -> Iterator[None]:
    """Running out of CPU or GPU memory becomes a ConfigError that says what to shrink."""
    try:
        yield
    except (MemoryError, RuntimeError) as exc:  # torch.OutOfMemoryError (CUDA) is a RuntimeError
        # The CPU allocator raises a plain RuntimeError: "DefaultCPUAllocator: can't allocate memory: ..."
        if not isinstance(exc, (MemoryError, torch.OutOfMemoryError)) and not re.search(
                r"out of memory|allocate memory", str(exc)):
            raise
        memory = "GPU" if device.type == "cuda" else "CPU"
        raise ConfigError(f"ran out of {memory} memory with model.hidden {cfg.model.hidden} and data.batch_size "
                          f"{cfg.data.batch_size}; use a smaller model or batch") from None


def resolve(cfg: Config, dataset: Dataset) -> Config:
    """The config with inferred targets and tasks written in, so config.yaml alone rebuilds the run."""
    target = dataset.targets[0] if len(dataset.targets) == 1 else list(dataset.targets)
    units = {t: u for t, u in resolve_units(cfg.data).items() if t in dataset.targets}
    # An absolute path lets `dlrun eval` find the CSV from any working directory.
    path = str(Path(cfg.data.path).resolve()) if cfg.data.path else None
    data = cfg.data.model_copy(update={"target": target, "task": dict(dataset.tasks), "units": units, "path": path})
    return cfg.model_copy(update={"data": data})


def check_against_tasks(cfg: Config, tasks: dict[str, str]) -> None:
    """Settings that only make sense for some targets, checked once the tasks are known (before any run directory)."""
    stopping = cfg.train.early_stopping
    allowed = epoch_columns(tasks)
    if stopping and stopping.metric not in allowed:
        raise ConfigError(f"train.early_stopping.metric: {stopping.metric!r} is not recorded; allowed: {', '.join(allowed)}")
    if "classification" not in tasks.values():
        for key, value, default in (("label_smoothing", cfg.train.label_smoothing, 0.0), ("class_weights", cfg.train.class_weights, "none")):
            if value != default:
                raise ConfigError(f"train.{key}: {value!r} applies to classification targets, but every target here is regression")

"""`train(cfg)`: the whole pipeline, config -> run directory. The CLI's `dlrun train` is a thin shell over this."""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from dlrun.run import layout
from dlrun.run.directory import create_run_dir, open_run_files, read_config, write_config
from dlrun.run.extend import extended_config
from dlrun.run.interrupts import RunInterrupted
from dlrun.run.stop_on_signal import StopOnSignal
from dlrun.run.lock import hold_run_lock
from dlrun.run.record import RunRecord, read_record, write_record
from dlrun.run.tracked import finish_tracking, start_tracking
from dlrun.training.checkpoint import resume_point
from dlrun.training.distributed import SINGLE, AgreeToStop, World, joined, launched_world
from dlrun.training.augment import onehot_blocks, oversample, smote_target
from dlrun.training.callbacks import Checkpoints, MetricsLog
from dlrun.training.state import Callback
from dlrun.config.schema import Config
from dlrun.data.load import Dataset, load_dataset
from dlrun.data.splits import SPLITS
from dlrun.model.device import choose_threads, resolve_device, seeded_threads
from dlrun.training.diagnostics import Diagnostics
from dlrun.core.errors import ConfigError, RunError
from dlrun.training.fast_step import unsupported
from dlrun.run.outcome import (Run, begin_run, check_against_tasks, complete_run, completed_before, restore_for_resume,
                               resumed_record, out_of_memory_explained,
                               record_failure as _record_failure, resolve)
from dlrun.run.results import write_results
from dlrun.run.streamed import resume_streamed, train_streamed
from dlrun.data.stream import streams
from dlrun.data.tensors import to_split
from dlrun.training.losses import Criterion
from dlrun.metrics.health import validation_warnings
from dlrun.model.mlp import build_model
from dlrun.data.finite import require_finite_scaling
from dlrun.data.preprocess import Preprocessor
from dlrun.data.tensors import Split
from dlrun.training.loop import fit
from dlrun.training.transfer import prepare_for_finetuning


@dataclass(frozen=True)
class Prepared:
    """Everything a run needs before it has a directory: checked data, fitted preprocessing, tensors, a model."""

    cfg: Config  # resolved
    device: torch.device
    dataset: Dataset
    prep: Preprocessor
    splits: dict[str, Split]
    model: nn.Module
    summary: dict[str, Any]


def prepare(cfg: Config, prep: Preprocessor | None = None, world: World = SINGLE) -> Prepared:
    """config -> checked rows -> fitted preprocessor -> tensors on the device -> model. Raises DlrunError on bad input.

    With `prep` (a saved run's), its tasks and fitted state are reused instead of inferred and fitted again.
    """
    device = world.local_device(resolve_device(cfg.device))  # under torchrun on CUDA: this process's own GPU
    dataset = load_dataset(cfg.data, cfg.seed, tasks=prep.tasks if prep else None)
    cfg = resolve(cfg, dataset)
    check_against_tasks(cfg, dataset.tasks)
    if prep is None:
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported once, by the check below
            prep = Preprocessor(cfg.preprocess, dataset.features, dataset.targets, dataset.tasks,
                                dataset.columns).fit(dataset.part("train"))
        require_finite_scaling(prep)
        if cfg.model.num_embeddings == "piecewise_linear":
            prep.fit_bins(dataset.part("train"), cfg.model.n_bins)
    with out_of_memory_explained(cfg, device):
        train, n_synthetic = _train_split(cfg, dataset, prep, device)
        splits = {"train": train, **{name: to_split(prep, dataset.part(name), device) for name in SPLITS if name != "train"}}
        model = build_model(len(prep.feature_names_), prep.output_sizes(), cfg.model, cfg.seed, prep.input_layout()).to(device)
    summary = {**summarise(dataset, prep), "rows_added_by_smote": n_synthetic}
    stopping = cfg.train.early_stopping
    val = dataset.part("val")
    val_classes = {t: {str(k): int(v) for k, v in val[t].value_counts().items()}
                   for t, task in dataset.tasks.items() if task == "classification"}
    summary["warnings"] = [*dataset.warnings, *validation_warnings(len(val), val_classes, stopping.metric if stopping else None)]
    return Prepared(cfg, device, dataset, prep, splits, model, summary)


def _train_split(cfg: Config, dataset: Dataset, prep: Preprocessor, device: torch.device) -> tuple[Split, int]:
    """The training rows as tensors and how many synthetic rows augment.smote added to them (0 when it is off).

    Only the training split is oversampled: validation and test keep the class balance the data really has.
    """
    rows = dataset.part("train")
    if not cfg.augment.smote:
        return to_split(prep, rows, device), 0
    target = smote_target(dataset.tasks)
    X, y = prep.transform_features(rows), prep.transform_targets(rows)[target]
    X_over, y_over = oversample(X, y, cfg.augment.smote_k, cfg.seed, prep.classes(target), onehot_blocks(prep))
    return Split(torch.from_numpy(X_over).to(device), {target: torch.from_numpy(y_over).to(device)}), len(y_over) - len(y)


def train(cfg: Config, runs_dir: Path | str = "runs", callbacks: Sequence[Callback] = (), score_test: bool = True,
          warn: Optional[Callable[[str], None]] = None) -> Run:
    """Load and preprocess data, then create the run directory and train; a run that started and failed is marked failed.

    score_test=False leaves the test split unscored (a sweep's trials: only the final pick is scored on it).
    warn, when given, hears the data warnings (column decisions, a small validation split) before training starts.
    Under torchrun every process calls this: rank 0 creates and writes the run directory, the others train beside it."""
    if streams(cfg.data):  # a table over the memory budget, or data.in_memory: false (one process)
        if launched_world().size > 1:
            raise ConfigError("data.in_memory: a streamed table trains in one process; torchrun's data-parallel "
                              "training needs the table in memory (data.in_memory: true, or a larger data.memory_budget)")
        return train_streamed(cfg, runs_dir, callbacks, score_test, warn)
    with joined(cfg) as world:
        return _train(cfg, Path(runs_dir), callbacks, score_test, warn, world)


def _train(cfg: Config, runs_dir: Path, callbacks: Sequence[Callback], score_test: bool,
           warn: Optional[Callable[[str], None]], world: World) -> Run:
    started = time.perf_counter()
    ready = prepare(cfg, world=world)
    for line in ready.summary["warnings"] if warn else ():
        warn(line)
    notes = prepare_for_finetuning(ready.model, ready.cfg.train, layout.BEST_CHECKPOINT)
    if not world.is_main:
        return _follow(ready, world.share(None), callbacks, notes, None, world)
    # Everything that can be wrong with the input has been checked: only now does a run directory appear.
    run_dir = world.share(create_run_dir(runs_dir, ready.cfg.name))
    try:
        with hold_run_lock(run_dir):
            return _start(ready, run_dir, callbacks, score_test, notes, started, world)
    except BaseException:
        if not any((run_dir / name).exists() for name in (layout.CONFIG, layout.RECORD)):
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing in it says what it was (a full disk): leave no empty run
        raise


def resume(run_dir: Path | str, callbacks: Sequence[Callback] = (), overrides: Sequence[str] = ()) -> Run:
    """Continue an interrupted run in its own directory from checkpoints/last.pt, as if it had never stopped; a run
    stopped before its first epoch ended starts again from the first, from its saved config.

    `overrides` may only be `train.epochs=N` (see run/extend.py): the run, finished or not, continues to epoch N and
    its config.yaml says N from then on. Under torchrun every process calls this, and all load the same checkpoint."""
    run_dir = Path(run_dir)
    if resumable_config(run_dir).data.in_memory is False:  # a streamed run (config.yaml records the choice)
        return resume_streamed(run_dir, callbacks, overrides)
    with joined(resumable_config(run_dir)) as world:
        return _resume(run_dir, callbacks, overrides, world)


def _resume(run_dir: Path, callbacks: Sequence[Callback], overrides: Sequence[str], world: World) -> Run:
    with hold_run_lock(run_dir) if world.is_main else nullcontext():  # torchrun's other processes only read
        record = read_record(run_dir)
        completed = completed_before(run_dir, record, overrides)
        started = time.perf_counter()
        if world.share(not (run_dir / layout.PREPROCESS).is_file()):  # stopped before its data was prepared: restart in place
            if overrides and world.is_main:
                write_config(run_dir, extended_config(run_dir, overrides, None, completed))
            ready = prepare(world.share(resumable_config(run_dir) if world.is_main else None), world=world)
            notes = prepare_for_finetuning(ready.model, ready.cfg.train, layout.BEST_CHECKPOINT)
            if not world.is_main:
                return _follow(ready, run_dir, callbacks, notes, None, world)
            return _start(ready, run_dir, callbacks, record.score_test is not False, notes, started, world)
        saved = open_run_files(run_dir)
        ready = prepare(saved.cfg, saved.prep, world)
        # Rank 0 reads (and repairs) the checkpoints; under torchrun every process continues from what it read.
        checkpoint = resume_point(run_dir / layout.LAST_CHECKPOINT, run_dir / layout.BEST_CHECKPOINT, ready.device if world.size == 1 else "cpu") if world.is_main else None
        if overrides and world.is_main:  # checked against the checkpoint before config.yaml changes: a refusal changes nothing
            extended = extended_config(run_dir, overrides, checkpoint, completed)
            write_config(run_dir, extended)
            ready = replace(ready, cfg=extended)
        checkpoint, cfg = world.share((checkpoint, ready.cfg))
        ready = replace(ready, cfg=cfg)
        restore_for_resume(ready.model, ready.cfg.train, checkpoint, run_dir)
        if not world.is_main:
            return _follow(ready, run_dir, callbacks, [], checkpoint, world)
        record = resumed_record(record, checkpoint, time.perf_counter() - started)
        # A run started without scoring the test split (a sweep's trial) resumes without it too.
        return _execute(ready, run_dir, record, callbacks, resume=checkpoint, world=world)


def resumable_config(run_dir: Path) -> Config:
    """The config a resumed run continues with; a run stopped before it was written has nothing to resume."""
    if Path(run_dir).is_dir() and not (Path(run_dir) / layout.CONFIG).is_file():
        raise RunError(f"{run_dir} cannot be resumed: it was stopped before its {layout.CONFIG} was written, so nothing "
                       "was trained; start it again with dlrun train CONFIG")
    return read_config(run_dir)


def _start(ready: Prepared, run_dir: Path, callbacks: Sequence[Callback], score_test: bool, notes: list[str],
           started: float, world: World = SINGLE) -> Run:
    """Write what resuming needs (outcome.begin_run), then train."""
    record = begin_run(run_dir, ready.cfg, ready.device, ready.prep, ready.summary, notes, score_test,
                       time.perf_counter() - started)
    return _execute(ready, run_dir, record, callbacks, resume=None, world=world)


def _execute(ready: Prepared, run_dir: Path, record: RunRecord, callbacks: Sequence[Callback],
             resume: dict[str, Any] | None, world: World = SINGLE) -> Run:
    """Train inside an existing run directory, keeping run.json's status true whatever happens."""
    cfg, device = ready.cfg, ready.device
    threads = choose_threads(cfg.train.threads, len(ready.prep.feature_names_), cfg.model.hidden, cfg.data.batch_size, device)
    slow_reason = unsupported(ready.model, cfg)  # the same test trainer.make_step applies
    record = record.updated(threads=threads, train_step={"path": "general" if slow_reason else "fast", "reason": slow_reason},
                            world_size=world.size)
    tracking, record = start_tracking(cfg, run_dir, record)  # None unless the config's tracking section asks
    write_record(run_dir, record)
    rows = ready.splits["train"]
    diagnostics = Diagnostics(run_dir / layout.DIAGNOSTICS, rows.X, rows.y, ready.splits["val"].X,
                              Criterion(ready.prep, cfg.train, rows.y), seed=cfg.seed)
    # Diagnostics before Checkpoints: last.pt then holds this epoch's diagnostics for a resumed run.
    loop_callbacks = [MetricsLog(run_dir / layout.HISTORY), diagnostics,
                      Checkpoints(run_dir / layout.LAST_CHECKPOINT, run_dir / layout.BEST_CHECKPOINT),
                      *([tracking] if tracking else [])]  # after Checkpoints: an epoch is tracked once last.pt holds it
    stopper = StopOnSignal(run_dir)  # last: it ends the run only after every callback has saved its epoch
    agree = [AgreeToStop(world, stopper)] if world.size > 1 else []  # every process stops at the same epoch
    try:
        with out_of_memory_explained(cfg, device), seeded_threads(cfg.seed, threads, device):
            started = time.perf_counter()
            with stopper.listening():
                state = fit(ready.model, ready.splits["train"], ready.splits["val"], ready.prep, cfg, device,
                            [*loop_callbacks, *callbacks, *agree, stopper], resume=resume, world=world)
            trained = time.perf_counter()
            metrics = write_results(run_dir, ready.dataset, ready.prep, ready.model, ready.splits, record.score_test,
                                    n_synthetic=ready.summary.get("rows_added_by_smote", 0))
            # Wall time per stage (this process: a resumed run's training counts from the resume), so slow stages show.
            seconds = {**record.seconds, "train": round(trained - started, 3),
                       "evaluate_and_write": round(time.perf_counter() - trained, 3)}
    except BaseException as exc:  # an out-of-memory ConfigError is recorded here too
        finish_tracking(tracking, run_dir, "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed")
        _record_failure(run_dir, record, exc)
        if isinstance(exc, KeyboardInterrupt) and not isinstance(exc, RunInterrupted):  # a second Ctrl-C
            raise RunInterrupted(run_dir, None, "SIGINT") from None
        raise
    return complete_run(run_dir, cfg, record, state, metrics, seconds, ready.summary, tracking)


def _follow(ready: Prepared, run_dir: Path, callbacks: Sequence[Callback], notes: list[str],
            resume: dict[str, Any] | None, world: World) -> Run:
    """Train as one of torchrun's processes other than rank 0: the same steps as _execute's beside it, with the
    caller's callbacks and none that write; rank 0 scores and writes the run. The result names rank 0's directory."""
    cfg, device = ready.cfg, ready.device
    threads = choose_threads(cfg.train.threads, len(ready.prep.feature_names_), cfg.model.hidden, cfg.data.batch_size, device)
    stopper = StopOnSignal(run_dir)
    with out_of_memory_explained(cfg, device), seeded_threads(cfg.seed, threads, device), stopper.listening():
        state = fit(ready.model, ready.splits["train"], ready.splits["val"], ready.prep, cfg, device,
                    [*callbacks, AgreeToStop(world, stopper), stopper], resume=resume, world=world)
    return Run(run_dir, cfg, {}, state.best_epoch, state.epoch, state.monitor,
               state.stop_reason or f"ran all {state.epoch} epochs", ready.summary, notes)


def summarise(dataset: Dataset, prep: Preprocessor) -> dict[str, Any]:
    """Rows per split, encoded feature count, class balance or target range, and imputed values."""
    train = dataset.part("train")
    targets = {}
    for target, task in dataset.tasks.items():
        if task == "classification":
            targets[target] = {"task": task, "class_counts": {str(k): int(v) for k, v in train[target].value_counts().items()}}
        else:
            values = pd.to_numeric(train[target])
            targets[target] = {"task": task, "min": float(values.min()), "mean": float(values.mean()), "max": float(values.max())}
    return {
        "rows": {name: int((dataset.split == name).sum()) for name in SPLITS},
        "rows_dropped_missing_target": dataset.n_dropped_missing_target,
        "features_in": len(dataset.features),
        # drop-listed columns, the split column, and text identifiers (a different value in every row)
        "unused_columns": [c for c in dataset.frame.columns if c not in dataset.features and c not in dataset.targets],
        "features_encoded": len(prep.feature_names_),
        "numeric_features": prep.numeric_features,
        "categorical_features": prep.categorical_features,
        "targets": targets,
        "missing_imputed_in_train": prep.missing_in_train(),
        "missing_indicators": list(getattr(prep, "indicators_", [])),
        "columns": prep.column_table() or [d.table_row() for d in dataset.columns.values()],
        "column_warnings": list(dataset.warnings),
    }

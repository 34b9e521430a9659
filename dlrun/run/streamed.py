"""`train` and `resume` for a streamed table (data.in_memory: false, or auto over the memory budget): the runner's
pipeline with the table read in chunks. Preprocessing is fitted in passes (data/stream_fit.py), training reads
batches through a shuffle buffer (training/stream_loop.py), and the final scores and predictions.csv are computed
and written chunk by chunk. The run directory holds the same files as an in-memory run's."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from dlrun.config.schema import Config
from dlrun.core.heap import keep_large_blocks_off_the_heap
from dlrun.core.io import write_atomic, write_csv, write_json
from dlrun.data.splits import SPLITS
from dlrun.data.preprocess import Preprocessor
from dlrun.data.stream_fit import StreamFit, fit_streamed, streamed_summary
from dlrun.data.tensors import Split, to_split
from dlrun.metrics.health import validation_warnings
from dlrun.metrics.score import score
from dlrun.model.device import choose_threads, resolve_device, seeded_threads
from dlrun.model.forward import forward_split
from dlrun.model.mlp import build_model
from dlrun.run import layout
from dlrun.run.directory import create_run_dir, open_run_files, read_config, write_config
from dlrun.run.extend import extended_config
from dlrun.run.interrupts import RunInterrupted
from dlrun.run.lock import hold_run_lock
from dlrun.run.outcome import (Run, begin_run, check_against_tasks, complete_run, completed_before, restore_for_resume,
                               resumed_record, out_of_memory_explained, record_failure,
                               resolve)
from dlrun.run.outputs import confusion_frame, prediction_frame, with_predictions
from dlrun.run.record import RunRecord, read_record, write_record
from dlrun.run.stop_on_signal import StopOnSignal
from dlrun.run.tracked import finish_tracking, start_tracking
from dlrun.training.callbacks import Checkpoints, MetricsLog
from dlrun.training.checkpoint import resume_point
from dlrun.training.diagnostics import Diagnostics
from dlrun.training.fast_step import unsupported
from dlrun.training.losses import Criterion
from dlrun.training.state import Callback
from dlrun.training.stream_loop import fit_stream
from dlrun.training.transfer import prepare_for_finetuning


@dataclass(frozen=True)
class StreamReady:
    """A streamed run before training: the fitted table, a model, the summary, and the sample's rows as tensors
    (what diagnostics looks at, instead of whole splits)."""

    cfg: Config
    device: torch.device
    fit: StreamFit
    model: nn.Module
    summary: dict[str, Any]
    sample: dict[str, Split]

    @property
    def prep(self) -> Preprocessor:
        return self.fit.prep


def prepare_streamed(cfg: Config, prep: Preprocessor | None = None, summary: dict[str, Any] | None = None) -> StreamReady:
    """config -> fitted streamed table -> model. With `prep` and `summary` (a saved run's), nothing is fitted again."""
    keep_large_blocks_off_the_heap()  # chunk after chunk, memory must not creep up (core/heap.py)
    device = resolve_device(cfg.device)
    fit = fit_streamed(cfg, prep)
    cfg = resolve(cfg, fit.sample)
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"in_memory": False})})  # config.yaml says it
    check_against_tasks(cfg, fit.sample.tasks)
    with out_of_memory_explained(cfg, device):
        sample = {name: to_split(fit.prep, fit.sample.part(name), device) for name in ("train", "val")}
        model = build_model(len(fit.prep.feature_names_), fit.prep.output_sizes(), cfg.model, cfg.seed,
                            fit.prep.input_layout()).to(device)
    if summary is None:
        summary = streamed_summary(fit)
        stopping = cfg.train.early_stopping
        val_classes = {t: {str(k): int(v) for k, v in fit.sample.part("val")[t].value_counts().items()}
                       for t, task in fit.sample.tasks.items() if task == "classification"}
        summary["warnings"] = [*fit.sample.warnings, *validation_warnings(summary["rows"]["val"], val_classes,
                                                                         stopping.metric if stopping else None)]
    return StreamReady(cfg, device, fit, model, summary, sample)


def train_streamed(cfg: Config, runs_dir: Path | str = "runs", callbacks: Sequence[Callback] = (), score_test: bool = True,
                   warn: Optional[Callable[[str], None]] = None) -> Run:
    """runner.train for a streamed table."""
    started = time.perf_counter()
    ready = prepare_streamed(cfg)
    for line in ready.summary["warnings"] if warn else ():
        warn(line)
    notes = prepare_for_finetuning(ready.model, ready.cfg.train, layout.BEST_CHECKPOINT)
    run_dir = create_run_dir(Path(runs_dir), ready.cfg.name)
    try:
        with hold_run_lock(run_dir):
            record = begin_run(run_dir, ready.cfg, ready.device, ready.prep, ready.summary, notes, score_test,
                               time.perf_counter() - started)
            return _execute(ready, run_dir, record, callbacks, resume=None)
    except BaseException:
        if not any((run_dir / name).exists() for name in (layout.CONFIG, layout.RECORD)):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def resume_streamed(run_dir: Path, callbacks: Sequence[Callback] = (), overrides: Sequence[str] = ()) -> Run:
    """runner.resume for a streamed run whose preprocessing was saved: continue after the last finished epoch, the
    shuffle buffer's generator and the stream position restored from last.pt."""
    with hold_run_lock(run_dir):
        record = read_record(run_dir)
        completed = completed_before(run_dir, record, overrides)
        started = time.perf_counter()
        if not (run_dir / layout.PREPROCESS).is_file():  # stopped before its data was prepared: start again in place
            if overrides:
                write_config(run_dir, extended_config(run_dir, overrides, None, completed))
            ready = prepare_streamed(read_config(run_dir))
            write_json(run_dir / layout.PREPROCESS, ready.prep.to_dict())
            record = record.updated(data=ready.summary)
            return _execute(ready, run_dir, record, callbacks, resume=None)
        saved = open_run_files(run_dir)
        ready = prepare_streamed(saved.cfg, saved.prep, record.data or {})
        checkpoint = resume_point(run_dir / layout.LAST_CHECKPOINT, run_dir / layout.BEST_CHECKPOINT, ready.device)
        if overrides:
            extended = extended_config(run_dir, overrides, checkpoint, completed)
            write_config(run_dir, extended)
            ready = replace(ready, cfg=extended)
        restore_for_resume(ready.model, ready.cfg.train, checkpoint, run_dir)
        record = resumed_record(record, checkpoint, time.perf_counter() - started)
        return _execute(ready, run_dir, record, callbacks, resume=checkpoint)


def _execute(ready: StreamReady, run_dir: Path, record: RunRecord, callbacks: Sequence[Callback],
             resume: dict[str, Any] | None) -> Run:
    """Train and score inside the run directory, keeping run.json's status true whatever happens."""
    cfg, device, prep = ready.cfg, ready.device, ready.prep
    threads = choose_threads(cfg.train.threads, len(prep.feature_names_), cfg.model.hidden, cfg.data.batch_size, device)
    slow_reason = unsupported(ready.model, cfg)
    record = record.updated(threads=threads, train_step={"path": "general" if slow_reason else "fast", "reason": slow_reason})
    tracking, record = start_tracking(cfg, run_dir, record)  # None unless the config's tracking section asks
    write_record(run_dir, record)
    sample = ready.sample["train"]
    diagnostics = Diagnostics(run_dir / layout.DIAGNOSTICS, sample.X, sample.y, ready.sample["val"].X,
                              Criterion(prep, cfg.train, sample.y), seed=cfg.seed)
    loop_callbacks = [MetricsLog(run_dir / layout.HISTORY), diagnostics,
                      Checkpoints(run_dir / layout.LAST_CHECKPOINT, run_dir / layout.BEST_CHECKPOINT),
                      *([tracking] if tracking else [])]  # after Checkpoints: an epoch is tracked once last.pt holds it
    stopper = StopOnSignal(run_dir)
    chunks = lambda name: ready.fit.table.split_tensors(name, prep, device)  # noqa: E731
    try:
        with out_of_memory_explained(cfg, device), seeded_threads(cfg.seed, threads, device):
            started = time.perf_counter()
            with stopper.listening():
                state = fit_stream(ready.model, chunks, prep, cfg, device, class_counts(ready.summary, prep),
                                   [*loop_callbacks, *callbacks, stopper], resume=resume)
            trained = time.perf_counter()
            metrics = write_results(run_dir, ready, record.score_test)
            seconds = {**record.seconds, "train": round(trained - started, 3),
                       "evaluate_and_write": round(time.perf_counter() - trained, 3)}
    except BaseException as exc:
        finish_tracking(tracking, run_dir, "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed")
        record_failure(run_dir, record, exc)
        if isinstance(exc, KeyboardInterrupt) and not isinstance(exc, RunInterrupted):
            raise RunInterrupted(run_dir, None, "SIGINT") from None
        raise
    return complete_run(run_dir, cfg, record, state, metrics, seconds, ready.summary, tracking)


def class_counts(summary: dict[str, Any], prep: Preprocessor) -> dict[str, list[int]]:
    """Training rows per class index of each classification target, from the run's data summary."""
    counts = {}
    for target in prep.targets:
        if prep.is_classification(target):
            per_class = summary.get("targets", {}).get(target, {}).get("class_counts", {})
            counts[target] = [int(per_class.get(str(c), 0)) for c in prep.classes(target)]
    return counts


def write_results(run_dir: Path, ready: StreamReady, score_test: bool = True) -> dict:
    """metrics.json for every split, confusion_<target>.csv and predictions.csv for the test split, in one pass over
    the table: each chunk is encoded and scored once, its test rows written to predictions.csv at once."""
    prep, model, device = ready.prep, ready.model, ready.device
    scored = SPLITS if score_test else [name for name in SPLITS if name != "test"]
    outputs: dict[str, list] = {name: [] for name in scored}
    truth: dict[str, list] = {name: [] for name in scored}
    columns = ready.fit.sample.features + ready.fit.sample.targets

    def score_chunks(fh) -> None:
        first = True
        for chunk in ready.fit.table.chunks():
            out = forward_split(model, torch.from_numpy(prep.transform_features(chunk.cleaned)).to(device))
            y = prep.transform_targets(chunk.cleaned)
            for name in scored:
                rows = np.flatnonzero(chunk.split == name)
                if len(rows) == 0:
                    continue
                index = torch.from_numpy(rows).to(device)
                outputs[name].append({t: o[index] for t, o in out.items()})
                truth[name].append({t: torch.from_numpy(v[rows]).to(device) for t, v in y.items()})
                if name == "test" and fh is not None:
                    frame = with_predictions(chunk.cleaned.iloc[rows][columns], prediction_frame(prep, outputs[name][-1]))
                    frame.to_csv(fh, header=first, index=False)
                    first = False

    if score_test:
        write_atomic(run_dir / layout.PREDICTIONS, score_chunks)
    else:
        score_chunks(None)
    joined = {name: ({t: torch.cat([o[t] for o in outputs[name]]) for t in outputs[name][0]},
                     {t: torch.cat([y[t] for y in truth[name]]) for t in truth[name][0]}) for name in scored}
    metrics = {name: score(out, y, prep) for name, (out, y) in joined.items()}
    write_json(run_dir / layout.METRICS, metrics)
    if score_test:
        out, y = joined["test"]
        for target in prep.targets:
            if prep.is_classification(target):
                write_csv(run_dir / layout.confusion_file(target), confusion_frame(prep, target, out[target], y[target]))
    return metrics

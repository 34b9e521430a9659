"""`train(cfg)`: the whole pipeline, config -> run directory. The CLI's `dlrun train` is a thin shell over this."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch

from dlrun.artifacts import create_run_dir, environment, now, write_config, write_run_info
from dlrun.callbacks import Callback, Checkpoints, MetricsLog
from dlrun.config import Config
from dlrun.data import SPLITS, Dataset, load_dataset, resolve_units
from dlrun.device import choose_threads, resolve_device
from dlrun.errors import ConfigError
from dlrun.inference import confusion_frame, prediction_frame, to_split
from dlrun.io import write_csv, write_json
from dlrun.metrics import epoch_columns, score
from dlrun.model import build_model
from dlrun.preprocess import Preprocessor
from dlrun.trainer import fit, forward_split
from dlrun.transfer import prepare_for_finetuning


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


def train(cfg: Config, runs_dir: Path | str = "runs", callbacks: Sequence[Callback] = ()) -> Run:
    """Load and preprocess data, then create the run directory and train; a run that started and failed is marked failed."""
    device = resolve_device(cfg.device)
    dataset = load_dataset(cfg.data, cfg.seed)
    cfg = resolve(cfg, dataset)
    _check_monitor(cfg, dataset.tasks)
    prep = Preprocessor(cfg.preprocess, dataset.features, dataset.targets, dataset.tasks).fit(dataset.part("train"))
    splits = {name: to_split(prep, dataset.part(name), device) for name in SPLITS}
    model = build_model(len(prep.feature_names_), prep.output_sizes(), cfg.model, cfg.seed).to(device)
    notes = prepare_for_finetuning(model, cfg.train)
    summary = summarise(dataset, prep)

    threads = choose_threads(cfg.train.threads, len(prep.feature_names_), cfg.model.hidden, cfg.data.batch_size, device)

    # Everything that can be wrong with the input has been checked: only now does a run directory appear.
    run_dir = create_run_dir(Path(runs_dir), cfg.name)
    info = {"status": "running", "started": now(), "ended": None, "seed": cfg.seed, "device": str(device), "threads": threads,
            **environment(), "data": summary, "notes": notes}
    write_run_info(run_dir, info)
    write_config(run_dir, cfg)
    write_json(run_dir / "preprocess.json", prep.to_dict())
    loop_callbacks = [MetricsLog(run_dir / "metrics.csv"), Checkpoints(run_dir / "checkpoints")]
    threads_before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        # Dropout draws from torch's global generator: fork it so the seed fixes it without leaking state.
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(cfg.seed)
            state = fit(model, splits["train"], splits["val"], prep, cfg, device, [*loop_callbacks, *callbacks])
        metrics = write_results(run_dir, dataset, prep, model, splits)
    except BaseException as exc:
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        write_run_info(run_dir, {**info, "status": "failed", "ended": now(), "error": reason})
        raise
    finally:
        torch.set_num_threads(threads_before)
    write_run_info(run_dir, {**info, "status": "completed", "ended": now(), "epochs_run": state.epoch,
                             "best_epoch": state.best_epoch, "monitor": state.monitor, "best_value": state.best_value,
                             "stop_reason": state.stop_reason or "reached train.epochs"})
    return Run(run_dir, cfg, metrics, state.best_epoch, state.epoch, state.monitor, state.stop_reason, summary, notes)


def resolve(cfg: Config, dataset: Dataset) -> Config:
    """The config with inferred targets and tasks written in, so config.yaml alone rebuilds the run."""
    target = dataset.targets[0] if len(dataset.targets) == 1 else list(dataset.targets)
    units = {t: u for t, u in resolve_units(cfg.data).items() if t in dataset.targets}
    # An absolute path lets `dlrun eval` find the CSV from any working directory.
    path = str(Path(cfg.data.path).resolve()) if cfg.data.path else None
    data = cfg.data.model_copy(update={"target": target, "task": dict(dataset.tasks), "units": units, "path": path})
    return cfg.model_copy(update={"data": data})


def _check_monitor(cfg: Config, tasks: dict[str, str]) -> None:
    stopping = cfg.train.early_stopping
    allowed = epoch_columns(tasks)
    if stopping and stopping.metric not in allowed:
        raise ConfigError(f"train.early_stopping.metric: {stopping.metric!r} is not recorded; allowed: {', '.join(allowed)}")


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
    missing = {c: s["n_missing"] for c, s in {**prep.numeric_, **prep.categorical_}.items() if s["n_missing"]}
    return {
        "rows": {name: int((dataset.split == name).sum()) for name in SPLITS},
        "rows_dropped_missing_target": dataset.n_dropped_missing_target,
        "features_in": len(dataset.features),
        # drop-listed columns, the split column, and text identifiers (a different value in every row)
        "unused_columns": [c for c in dataset.frame.columns if c not in dataset.features and c not in dataset.targets],
        "features_encoded": len(prep.feature_names_),
        "numeric_features": list(prep.numeric_),
        "categorical_features": list(prep.categorical_),
        "targets": targets,
        "missing_imputed_in_train": missing,
    }


def write_results(run_dir: Path, dataset: Dataset, prep: Preprocessor, model, splits) -> dict:
    """metrics.json for every split, confusion_<target>.csv and predictions.csv for the test split."""
    outputs = {name: forward_split(model, split.X) for name, split in splits.items()}
    metrics = {name: score(outputs[name], splits[name].y, prep) for name in SPLITS}
    write_json(run_dir / "metrics.json", metrics)
    test = splits["test"]
    for target in prep.targets:
        if prep.targets_[target]["task"] == "classification":
            write_csv(run_dir / f"confusion_{target}.csv", confusion_frame(prep, target, outputs["test"][target], test.y[target]))
    rows = dataset.part("test").reset_index(drop=True)
    predictions = pd.concat([rows[dataset.features + dataset.targets], prediction_frame(prep, outputs["test"])], axis=1)
    write_csv(run_dir / "predictions.csv", predictions)
    return metrics

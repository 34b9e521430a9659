"""`cross_validate(cfg)`: k-fold cross-validation, and bagged ensembles, as one directory of normal fold runs.

    runs/<time>-<name>/           run.json (status, the plan in `cv`), config.yaml, preprocess.json (fitted on every
                                  non-test row: the ensemble's schema and target scaling), cv.json,
                                  oof_predictions.csv, plots/learning_curves.png
        folds/<time>-fold<i>/     a normal run per fold (repeats: r<j>-fold<i>): `dlrun eval` and `--resume` work on it
    and, for an ensemble, metrics.json, predictions.csv and confusion_<target>.csv of the averaged model on test.

Each fold's run is `dlrun train` with data.split.fold set: its own split (folds.py in data/), its own preprocessing
fitted on its own training rows, the same test rows as every other fold and as `dlrun train`. A cv stopped by
Ctrl-C, a crash or a failing fold continues with `dlrun train --resume DIR`: finished folds are kept, an
interrupted one resumes from its last.pt, a missing one is trained.
"""

from __future__ import annotations

import shutil
from contextlib import suppress
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from dlrun.config.load import validate_config
from dlrun.config.schema import Config
from dlrun.core.errors import ConfigError, DlrunError, RunError
from dlrun.core.io import read_json, write_csv, write_json
from dlrun.data.load import Dataset, load_dataset
from dlrun.data.preprocess import Preprocessor
from dlrun.data.splits import fold_numbers
from dlrun.folds.predictor import open_predictor
from dlrun.folds.summary import out_of_fold, over_folds
from dlrun.metrics.score import score
from dlrun.run import layout
from dlrun.run.directory import create_run_dir, environment, now, open_run, open_run_files, read_config, write_config
from dlrun.run.interrupts import RunInterrupted
from dlrun.run.lock import hold_run_lock
from dlrun.run.outputs import confusion_frame, prediction_frame, with_predictions
from dlrun.run.record import CvPlan, RunRecord, read_record, write_record, write_status
from dlrun.run.runner import check_against_tasks, resolve, resume, train
from dlrun.training.state import Callback

MAX_FOLDS, MAX_REPEATS = 50, 20
MEMBER_SEED_STEP = 1_000_003  # fold model n trains with seed + n * this


@dataclass(frozen=True)
class FoldRun:
    repeat: int  # 1-based
    fold: int  # 1-based
    run_dir: Path
    best_epoch: int | None
    epochs_run: int | None
    metrics: dict[str, dict[str, dict[str, float]]]  # the fold run's metrics.json


@dataclass(frozen=True)
class CvResult:
    cv_dir: Path
    cfg: Config  # resolved, with train.ensemble when the folds are one predictor
    folds: list[FoldRun]
    summary: dict[str, Any]  # cv.json
    ensemble_metrics: dict[str, dict[str, float]] | None  # {target: {metric}} of the averaged model on test
    warnings: list[str] = field(default_factory=list)


def cross_validate(cfg: Config, runs_dir: Path | str = "runs", folds: int | None = None, repeats: int = 1,
                   ensemble: bool = False, callbacks: Sequence[Callback] = (),
                   on_fold: Optional[Callable[[int, int, int, int], None]] = None,
                   warn: Optional[Callable[[str], None]] = None, score_test: bool = True) -> CvResult:
    """Train one run per fold (and repeat) under a new directory, then summarise; see the module docstring.

    folds defaults to train.ensemble.folds, else 5; `ensemble` (or train.ensemble in the config) serves the fold
    models as one predictor. on_fold(repeat, fold, repeats, folds) hears each fold start; warn the data warnings.
    score_test=False leaves the test split unscored (a sweep's trial: only the final pick is scored on it)."""
    ensemble = ensemble or cfg.train.ensemble is not None
    folds = folds or (cfg.train.ensemble.folds if cfg.train.ensemble else 5)
    check_plan(cfg, folds, repeats)
    dataset = load_dataset(cfg.data, cfg.seed)
    resolved = resolve(cfg, dataset)
    check_against_tasks(resolved, dataset.tasks)
    for repeat in range(repeats):  # too few rows or groups for the folds: said now, before any directory exists
        fold_numbers(dataset.frame, dataset.split, cfg.data, _class_target(dataset), cfg.seed, folds, repeat)
    for line in dataset.warnings if warn else ():
        warn(line)
    raw = resolved.model_dump(mode="json")
    raw["train"]["ensemble"] = {"folds": folds} if ensemble else None
    resolved = validate_config(raw, source="cv config")
    prep = Preprocessor(resolved.preprocess, dataset.features, dataset.targets, dataset.tasks, dataset.columns)
    prep.fit(dataset.frame.loc[dataset.split != "test"])  # the directory's schema: never trains a fold
    cv_dir = create_run_dir(Path(runs_dir), resolved.name)
    (cv_dir / layout.CHECKPOINTS).rmdir()  # the weights live in each fold's run
    record = RunRecord(status="running", started=now(), ended=None, name=resolved.name,
                       data_source=resolved.data.dataset or resolved.data.path, seed=resolved.seed, **environment(),
                       cv=CvPlan(folds=folds, repeats=repeats, ensemble=ensemble, score_test=score_test))
    try:
        write_config(cv_dir, resolved)
        write_record(cv_dir, record)
        write_json(cv_dir / layout.PREPROCESS, prep.to_dict())
    except BaseException:
        shutil.rmtree(cv_dir, ignore_errors=True)
        raise
    return _run(cv_dir, callbacks, on_fold)


def resume_cv(cv_dir: Path | str, callbacks: Sequence[Callback] = (),
              on_fold: Optional[Callable[[int, int, int, int], None]] = None) -> CvResult:
    """Continue a stopped cv or ensemble directory: finished folds are kept, the others resumed or trained."""
    cv_dir = Path(cv_dir)
    record = read_record(cv_dir)
    if record.cv is None:
        raise RunError(f"{cv_dir} is not a cross-validation directory (its run.json has no cv plan)")
    if record.status == "completed":
        raise RunError(f"{cv_dir} has already completed; start a new one with dlrun cv CONFIG")
    return _run(cv_dir, callbacks, on_fold)


def is_cv_dir(path: Path | str) -> bool:
    """A directory `dlrun cv` (or an ensemble) made; `dlrun train --resume` hands it to resume_cv."""
    try:
        return (Path(path) / layout.RECORD).is_file() and read_record(path).cv is not None
    except DlrunError:
        return False


def check_plan(cfg: Config, folds: int, repeats: int) -> None:
    if not 2 <= folds <= MAX_FOLDS:
        raise ConfigError(f"--folds must be between 2 and {MAX_FOLDS}, got {folds}")
    if not 1 <= repeats <= MAX_REPEATS:
        raise ConfigError(f"--repeats must be between 1 and {MAX_REPEATS}, got {repeats}")
    if cfg.data.split.fold is not None:
        raise ConfigError("data.split.fold is set by dlrun cv on each fold's run; remove it from the config")


def member_name(repeat: int, fold: int, repeats: int) -> str:
    return f"fold{fold}" if repeats == 1 else f"r{repeat}-fold{fold}"


def member_dir(cv_dir: Path, repeat: int, fold: int, repeats: int) -> Path | None:
    """The fold's run directory (its name ends with the fold's name), or None before it was created."""
    found = sorted((cv_dir / layout.FOLDS).glob(f"*-{member_name(repeat, fold, repeats)}"))
    return found[-1] if found else None


def member_config(cfg: Config, repeat: int, fold: int, plan: CvPlan) -> Config:
    """The fold's config: the directory's, with data.split.fold set and no ensemble (a fold is one model)."""
    raw = cfg.model_dump(mode="json")
    raw["name"] = member_name(repeat, fold, plan.repeats)
    # Its own seed for the weights, shuffling and dropout (members that start alike agree more and average to less);
    # split_seed keeps the test rows and folds of the directory's seed.
    raw["seed"] = (cfg.seed + MEMBER_SEED_STEP * ((repeat - 1) * plan.folds + fold)) % 2**63
    raw["data"]["split"]["fold"] = {"k": plan.folds, "index": fold, "repeat": repeat - 1, "split_seed": cfg.seed}
    raw["train"]["ensemble"] = None
    return validate_config(raw, source=f"fold {fold}")


def _run(cv_dir: Path, callbacks: Sequence[Callback], on_fold) -> CvResult:
    with hold_run_lock(cv_dir):
        record = read_record(cv_dir)
        if record.status != "running":
            record = record.updated(status="running", ended=None, error=None)
            write_record(cv_dir, record)
        cfg, plan = read_config(cv_dir), record.cv
        started = time.perf_counter()
        try:
            fold_runs = [_fold_run(cv_dir, cfg, plan, repeat, fold, callbacks, on_fold)
                         for repeat in range(1, plan.repeats + 1) for fold in range(1, plan.folds + 1)]
            result = _summarise(cv_dir, cfg, plan, fold_runs)
        except BaseException as exc:
            _record_stop(cv_dir, record, exc)
            if isinstance(exc, RunInterrupted):  # the fold's resume command is not how a cv continues: this one is
                raise RunInterrupted(cv_dir, exc.epoch, exc.signal_name) from None
            raise
        seconds = {**record.seconds, "folds_and_summary": round(time.perf_counter() - started, 3)}
        write_record(cv_dir, read_record(cv_dir).updated(
            status="completed", ended=now(), seconds=seconds, epochs_run=sum(run.epochs_run or 0 for run in fold_runs),
            data=read_record(fold_runs[0].run_dir).data, **_best_values(fold_runs), warnings=result.warnings))
        return result


def mean_best(result: CvResult, column: str) -> float:
    """The mean over the fold runs of a metrics.csv column at each run's best epoch (a sweep's cv objective)."""
    import pandas as pd

    values = []
    for run in result.folds:
        history = pd.read_csv(run.run_dir / layout.HISTORY)
        values.append(float(history.loc[history["epoch"] == run.best_epoch, column].iloc[0]))
    return float(np.mean(values))


def _best_values(fold_runs: list[FoldRun]) -> dict[str, Any]:
    """The folds' monitored metric and its mean best value, for `dlrun runs`' validation column."""
    records = [read_record(run.run_dir) for run in fold_runs]
    values = [r.best_value for r in records if r.best_value is not None]
    return {"monitor": records[0].monitor, "best_value": float(np.mean(values)) if values else None}


def _fold_run(cv_dir: Path, cfg: Config, plan: CvPlan, repeat: int, fold: int, callbacks: Sequence[Callback],
              on_fold) -> FoldRun:
    """The fold's finished run: kept when it completed, resumed when it stopped, trained when it is missing."""
    found = member_dir(cv_dir, repeat, fold, plan.repeats)
    status = read_record(found).status if found is not None else None
    if status != "completed" and on_fold is not None:
        on_fold(repeat, fold, plan.repeats, plan.folds)
    if found is not None and status != "completed" and not (found / layout.CONFIG).is_file():
        shutil.rmtree(found)  # stopped before its config was written: nothing to resume, start it again
        found = None
    if found is None:
        run_dir = train(member_config(cfg, repeat, fold, plan), cv_dir / layout.FOLDS, callbacks=callbacks,
                        score_test=plan.score_test).run_dir
    elif status != "completed":
        run_dir = resume(found, callbacks=callbacks).run_dir
    else:
        run_dir = found
    finished = read_record(run_dir)
    return FoldRun(repeat, fold, run_dir, finished.best_epoch, finished.epochs_run, read_json(run_dir / layout.METRICS))


def _summarise(cv_dir: Path, cfg: Config, plan: CvPlan, fold_runs: list[FoldRun]) -> CvResult:
    """cv.json, oof_predictions.csv, the learning-curves plot and, for an ensemble, its test scores and predictions."""
    prep = open_run_files(cv_dir).prep
    dataset = load_dataset(cfg.data, cfg.seed, tasks=prep.tasks)  # read once: each fold's rows are picked from it
    fold_of = {repeat: fold_numbers(dataset.frame, dataset.split, cfg.data, _class_target(dataset), cfg.seed,
                                    plan.folds, repeat - 1) for repeat in range(1, plan.repeats + 1)}
    opened = [(run.repeat, run.fold, open_run(run.run_dir), dataset.frame.loc[fold_of[run.repeat] == run.fold])
              for run in fold_runs]
    oof, oof_scores = out_of_fold(prep, opened, dataset.features + dataset.targets)
    write_csv(cv_dir / layout.OOF_PREDICTIONS, oof)
    members = [str(run.run_dir.relative_to(cv_dir)) for run in fold_runs]
    summary: dict[str, Any] = {
        "folds": plan.folds, "repeats": plan.repeats, "ensemble": plan.ensemble,
        "val": over_folds([run.metrics["val"] for run in fold_runs]),
        **({"test": over_folds([run.metrics["test"] for run in fold_runs])} if plan.score_test else {}),
        "out_of_fold": oof_scores,
        "runs": [{"repeat": run.repeat, "fold": run.fold, "run": member, "best_epoch": run.best_epoch,
                  "epochs": run.epochs_run} for run, member in zip(fold_runs, members)],
    }
    ensemble_metrics = None
    write_record(cv_dir, read_record(cv_dir).updated(cv=plan.model_copy(update={"members": members})))
    if plan.ensemble and plan.score_test:
        ensemble_metrics = _score_ensemble(cv_dir, dataset, fold_runs)
        summary["ensemble_test"] = ensemble_metrics
    write_json(cv_dir / layout.CV_SUMMARY, summary)
    warnings = []
    try:
        from dlrun.folds.plots import learning_curves

        label = (lambda run: f"fold {run.fold}") if plan.repeats == 1 else (lambda run: f"repeat {run.repeat} fold {run.fold}")
        learning_curves(cv_dir, [(label(run), run.run_dir, run.best_epoch) for run in fold_runs])
    except Exception as exc:  # a picture must not fail a cv that trained
        warnings.append(f"plot {layout.LEARNING_CURVES_PLOT} was not drawn ({type(exc).__name__}: {exc})")
    return CvResult(cv_dir, cfg, fold_runs, summary, ensemble_metrics, warnings)


def _score_ensemble(cv_dir: Path, dataset: Dataset, fold_runs: list[FoldRun]) -> dict[str, dict[str, float]]:
    """metrics.json: the averaged model on test beside each fold model's test score; predictions.csv and the
    confusion matrices of the averaged model, as a single run writes them."""
    predictor = open_predictor(cv_dir)
    test = dataset.part("test")
    outputs = predictor.outputs(test)
    truth = {t: torch.tensor(v, device=predictor.device) for t, v in predictor.prep.transform_targets(test).items()}
    metrics = score(outputs, truth, predictor.prep)
    repeats = max(run.repeat for run in fold_runs)
    beside = {f"test_{member_name(run.repeat, run.fold, repeats).replace('-', '_')}": run.metrics["test"] for run in fold_runs}
    write_json(cv_dir / layout.METRICS, {"test": metrics, **beside})
    for target in predictor.prep.targets:
        if predictor.prep.is_classification(target):
            write_csv(cv_dir / layout.confusion_file(target),
                      confusion_frame(predictor.prep, target, outputs[target], truth[target]))
    rows = test[dataset.features + dataset.targets]
    write_csv(cv_dir / layout.PREDICTIONS, with_predictions(rows, prediction_frame(predictor.prep, outputs)))
    return metrics


def _class_target(dataset: Dataset) -> str | None:
    return next((t for t in dataset.targets if dataset.tasks[t] == "classification"), None)


def _record_stop(cv_dir: Path, record: RunRecord, exc: BaseException) -> None:
    """The directory says it stopped (interrupted: resumable) or failed, and why; never raises."""
    try:
        current = read_record(cv_dir)
    except DlrunError:
        current = record
    if isinstance(exc, KeyboardInterrupt):
        stopped = current.updated(status="interrupted", ended=now(), error=str(exc) or "interrupted")
    else:
        stopped = current.updated(status="failed", ended=now(), error=f"{type(exc).__name__}: {exc}")
    with suppress(OSError):
        write_status(cv_dir, stopped)

"""A sweep trial scored by cross-validation (search.cv_folds): the trial's run is a cv directory of k fold runs,
kept as one ensemble, and its value is the objective's mean over the folds at each fold's best epoch. The test split
stays unscored until the sweep scores its pick (the ensemble) once, as for single-run trials."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from dlrun.config.schema import Config
from dlrun.folds.cv import cross_validate, mean_best
from dlrun.run.runner import Run
from dlrun.training.state import Callback


def cv_trial(cfg: Config, trials_dir: Path, folds: int, objective: str, callbacks: Sequence[Callback]) -> tuple[Run, float]:
    """Train the trial's folds; returns the trial as a Run (val metrics: the fold means) and its objective value.
    Trials are not pruned: a per-epoch objective of one fold says little about the mean over all of them."""
    result = cross_validate(cfg, trials_dir, folds=folds, ensemble=True, callbacks=callbacks, score_test=False)
    means = {target: {metric: values["mean"] for metric, values in per_target.items()}
             for target, per_target in result.summary["val"].items()}
    value = mean_best(result, objective)
    stop = f"{folds}-fold cross-validation: {objective} is the mean over the folds"
    run = Run(result.cv_dir, result.cfg, {"val": means}, max(f.best_epoch or 0 for f in result.folds),
              sum(f.epochs_run or 0 for f in result.folds), objective, stop)
    return run, value

"""What a cross-validation adds up to: every metric's mean, std and 95% interval over the folds, and the out-of-fold
predictions of every non-test row (scored by the one fold model that did not train on it)."""

from __future__ import annotations

import math
from typing import Any, Sequence

import pandas as pd
import torch

from dlrun.data.preprocess import Preprocessor
from dlrun.folds.predictor import MIN_PROBABILITY, member_outputs
from dlrun.metrics.score import score
from dlrun.run.directory import FittedRun
from dlrun.run.outputs import prediction_frame, with_predictions

# Student's t quantile 0.975 for 1..30 degrees of freedom; beyond, the normal's 1.96 is within 2%.
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
Metrics = dict[str, dict[str, float]]  # {target: {metric: value}}


def interval(values: Sequence[float]) -> dict[str, Any]:
    """mean, sample std and the 95% t-interval of the mean of the fold values (NaN values are left out and counted)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(finite)
    mean = sum(finite) / n if n else math.nan
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / (n - 1)) if n > 1 else math.nan
    half = (T_975[n - 2] if n - 1 <= len(T_975) else 1.96) * std / math.sqrt(n) if n > 1 else math.nan
    return {"mean": mean, "std": std, "ci95": [mean - half, mean + half], "n": n, "folds": [float(v) for v in values]}


def over_folds(per_fold: Sequence[Metrics]) -> dict[str, dict[str, dict[str, Any]]]:
    """{target: {metric: interval(...)}} of each fold's {target: {metric: value}}."""
    first = per_fold[0]
    return {target: {metric: interval([fold[target][metric] for fold in per_fold]) for metric in first[target]}
            for target in first}


def out_of_fold(prep: Preprocessor, folds: Sequence[tuple[int, int, FittedRun, pd.DataFrame]],
                columns: list[str]) -> tuple[pd.DataFrame, Metrics]:
    """Every fold's validation rows (repeat, fold, its model, the rows) predicted by that fold's model, in real
    units: a frame with repeat, fold and row (the row's position among the rows with a target) before the rows'
    `columns` and their predictions; and the pooled out-of-fold score of every repeat, averaged over repeats.
    `prep` is the directory's (fitted on every non-test row)."""
    frames, scores = [], []
    for repeat in sorted({r for r, _, _, _ in folds}):
        outputs, truth = [], []
        for r, fold, member, rows in folds:
            if r != repeat:
                continue
            mapped = member_outputs(prep, member, rows)
            logits = {t: v.clamp(min=MIN_PROBABILITY).log() if prep.is_classification(t) else v for t, v in mapped.items()}
            outputs.append(logits)
            truth.append({t: torch.tensor(v) for t, v in prep.transform_targets(rows).items()})
            predictions = with_predictions(rows[columns], prediction_frame(prep, logits))
            predictions.insert(0, "row", rows.index.to_numpy())
            predictions.insert(0, "fold", fold)
            predictions.insert(0, "repeat", repeat)
            frames.append(predictions)
        joined = lambda parts: {t: torch.cat([part[t] for part in parts]) for t in parts[0]}  # noqa: E731
        scores.append(score(joined(outputs), joined(truth), prep))
    averaged = {target: {metric: sum(s[target][metric] for s in scores) / len(scores) for metric in scores[0][target]}
                for target in scores[0]}
    return pd.concat(frames, ignore_index=True), averaged

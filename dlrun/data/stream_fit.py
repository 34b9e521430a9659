"""Fitting the preprocessing of a streamed table in passes, never holding it whole.

Pass 1 draws the sample (stream.py); the column roles, tasks and every order statistic come from it. Pass 2 counts
over every training row what has an exact streaming form, and replaces the sample's estimate with it: per numeric
column the count, mean and variance (Chan et al.'s pairwise merge of per-chunk moments, stable in float64), minimum,
maximum and empty cells; per category its rows; per target its classes or mean and spread. Medians (numeric_impute),
IQRs (scale: robust), quantiles (scale: quantile, piecewise-linear bins) come from the sample's training rows: for a
sample of n rows the rank of an estimated p-quantile is off by about sqrt(p(1-p)/n) (0.0016 at the median for
n = 100,000), with probability > 0.999 within 3.3 times that.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from dlrun.config.schema import Config
from dlrun.core.errors import DataError
from dlrun.data.clean import read_columns
from dlrun.data.encoding import class_key, sorted_classes
from dlrun.data.finite import require_finite_scaling
from dlrun.data.load import Dataset, dataset_of
from dlrun.data.splits import SPLITS
from dlrun.data.encoding import category_counts
from dlrun.data.preprocess import Preprocessor
from dlrun.data.stream import StreamedTable


@dataclass
class Moments:
    """Count, mean, sum of squared deviations, min and max per column, merged chunk by chunk (NaN = empty)."""

    n: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n_missing: np.ndarray

    @classmethod
    def empty(cls, n_columns: int) -> "Moments":
        zeros = np.zeros(n_columns)
        return cls(zeros.copy(), zeros.copy(), zeros.copy(), np.full(n_columns, np.inf), np.full(n_columns, -np.inf),
                   zeros.copy())

    def add(self, X: np.ndarray) -> None:
        """Merge a chunk (n_rows, n_columns) of floats; non-finite cells count as empty, as the in-memory fit does."""
        X = np.where(np.isfinite(X), X, np.nan)
        present = ~np.isnan(X)
        n = present.sum(axis=0).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n > 0, np.nansum(X, axis=0) / np.maximum(n, 1), 0.0)
            m2 = np.nansum((X - mean) ** 2, axis=0)
        total = self.n + n
        delta = mean - self.mean
        safe = np.maximum(total, 1)
        self.mean = np.where(total > 0, self.mean + delta * n / safe, 0.0)
        self.m2 = self.m2 + m2 + delta**2 * self.n * n / safe
        self.n = total
        self.n_missing += len(X) - n
        if len(X):
            self.low = np.fmin(self.low, np.nanmin(np.where(present, X, np.inf), axis=0))
            self.high = np.fmax(self.high, np.nanmax(np.where(present, X, -np.inf), axis=0))


@dataclass
class TrainCounts:
    """Everything pass 2 counts over the training rows."""

    features: Moments
    targets: Moments
    categories: dict[str, dict[str, int]] = field(default_factory=dict)
    category_missing: dict[str, int] = field(default_factory=dict)
    classes: dict[str, dict[Any, int]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=lambda: {name: 0 for name in SPLITS})
    n_rows_read: int = 0


@dataclass
class StreamFit:
    """A streamed table with its fitted preprocessing, the sample's dataset (roles, warnings), and exact counts."""

    table: StreamedTable
    prep: Preprocessor
    sample: Dataset  # the sample's rows: column decisions, warnings, and the tensors diagnostics look at
    counts: TrainCounts


def fit_streamed(cfg: Config, prep: Preprocessor | None = None) -> StreamFit:
    """Sample, decide the columns, fit on the sample, then replace what has an exact form by one pass over every row.
    With `prep` (a saved run's), its decisions and fitted state are reused and only the sample is drawn again."""
    table = StreamedTable(cfg.data, cfg.seed, prep.columns if prep else None)
    raw_sample = table.sample()
    sample = dataset_of(raw_sample.reset_index(drop=True), cfg.data, cfg.seed, tasks=prep.tasks if prep else None)
    # dataset_of splits the sample its own way (stratified); the table splits by hash: put each row back in its split
    if cfg.data.split.column is None:
        positions = raw_sample.index.to_numpy() if len(sample.frame) == len(raw_sample) else _kept_positions(raw_sample, sample)
        sample = replace(sample, split=table.split_of(pd.DataFrame(index=positions)))
    split = sample.split
    if prep is not None:
        return StreamFit(table, prep, sample, TrainCounts(Moments.empty(0), Moments.empty(0)))
    table.decisions = sample.columns
    if not (split == "train").any():
        raise DataError(f"no row of the {len(split)}-row sample fell in the train split; raise data.stream.sample_rows")
    prep = Preprocessor(cfg.preprocess, sample.features, sample.targets, sample.tasks, sample.columns)
    with np.errstate(over="ignore", invalid="ignore"):
        prep.fit(sample.part("train"))
    counts = count_rows(table, prep)
    apply_counts(prep, counts)
    require_finite_scaling(prep)
    if cfg.model.num_embeddings == "piecewise_linear":
        prep.fit_bins(sample.part("train"), cfg.model.n_bins)
    return StreamFit(table, prep, sample, counts)


def _kept_positions(raw: pd.DataFrame, sample: Dataset) -> np.ndarray:
    """Table positions of the sample rows that kept a target (dataset_of drops the others and renumbers)."""
    cleaned, _ = read_columns(raw, sample.columns)
    return raw.index.to_numpy()[cleaned[sample.targets].notna().all(axis=1).to_numpy()]


def count_rows(table: StreamedTable, prep: Preprocessor) -> TrainCounts:
    """Pass 2: exact moments, categories and classes over every training row, and the rows of each split."""
    numeric, categorical = prep.numeric_features, prep.categorical_features
    regression = [t for t in prep.targets if not prep.is_classification(t)]
    counts = TrainCounts(Moments.empty(len(numeric)), Moments.empty(len(regression)))
    for chunk in table.chunks():
        counts.n_rows_read += len(chunk.raw)
        for name in SPLITS:
            counts.rows[name] += int((chunk.split == name).sum())
        train = chunk.cleaned.loc[chunk.split == "train"]
        if not len(train):
            continue
        block = train[numeric]
        if not all(pd.api.types.is_numeric_dtype(dtype) for dtype in block.dtypes):
            block = block.apply(pd.to_numeric, errors="coerce")
        counts.features.add(block.to_numpy(dtype=np.float64))
        counts.targets.add(train[regression].to_numpy(dtype=np.float64))
        for column in categorical:
            merged = counts.categories.setdefault(column, {})
            for key, n in category_counts(train[column]).items():
                merged[key] = merged.get(key, 0) + n
            counts.category_missing[column] = counts.category_missing.get(column, 0) + int(train[column].isna().sum())
        for target in prep.targets:
            if prep.is_classification(target):
                merged = counts.classes.setdefault(target, {})
                for value, n in train[target].value_counts().items():
                    merged[class_key(value)] = merged.get(class_key(value), 0) + int(n)
    for name in SPLITS:
        if counts.rows[name] == 0:
            raise DataError(f"the {name} split of {table.cfg.path} is empty")
    return counts


def apply_counts(prep: Preprocessor, counts: TrainCounts) -> None:
    """Replace the sample's estimates by the exact counts wherever one exists (see the module docstring)."""
    scale = prep.cfg.scale
    for j, column in enumerate(prep.numeric_features):
        state, moments = prep.numeric_[column], counts.features
        n_present, n_missing = moments.n[j], moments.n_missing[j]
        empty = n_present == 0
        fill = 0.0 if empty else moments.mean[j] if prep.cfg.numeric_impute == "mean" else state["fill"]
        # the moments of the filled column: the present values merged with n_missing copies of the fill
        n = max(n_present + n_missing, 1)
        mean = moments.mean[j] + (fill - moments.mean[j]) * n_missing / n
        m2 = moments.m2[j] + (fill - moments.mean[j]) ** 2 * n_present * n_missing / n
        low, high = (fill, fill) if empty else (min(moments.low[j], fill) if n_missing else moments.low[j],
                                                max(moments.high[j], fill) if n_missing else moments.high[j])
        state.update(fill=float(fill), n_missing=int(n_missing), min=None if empty else float(moments.low[j]),
                     max=None if empty else float(moments.high[j]))
        if scale == "standard":
            std = float(np.sqrt(m2 / n))
            state.update(center=float(mean), scale=std if std > 0 else 1.0)
        elif scale == "minmax":
            state.update(center=float(low), scale=float(high - low) if high > low else 1.0)
    for column in prep.categorical_features:
        prep.categorical_[column] = prep.categorical_state(counts.categories.get(column, {}), counts.category_missing.get(column, 0))
    regression = [t for t in prep.targets if not prep.is_classification(t)]
    for j, target in enumerate(regression):
        moments, state = counts.targets, prep.targets_[target]
        std = float(np.sqrt(moments.m2[j] / max(moments.n[j], 1)))
        state.update(mean=float(moments.mean[j]), std=std if std > 0 else 1.0)
    for target, classes in counts.classes.items():
        prep.targets_[target]["classes"] = sorted_classes(pd.Series(list(classes), dtype=object))
    prep.record_widths()


def streamed_summary(fit: StreamFit) -> dict[str, Any]:
    """run.json's data summary for a streamed table: exact rows, classes and target ranges; roles from the sample."""
    prep, counts, sample = fit.prep, fit.counts, fit.sample
    targets = {}
    regression = [t for t in prep.targets if not prep.is_classification(t)]
    for target in prep.targets:
        if prep.is_classification(target):
            targets[target] = {"task": "classification",
                               "class_counts": {str(k): v for k, v in sorted(counts.classes[target].items(), key=lambda kv: -kv[1])}}
        else:
            j = regression.index(target)
            targets[target] = {"task": "regression", "min": float(counts.targets.low[j]),
                               "mean": float(counts.targets.mean[j]), "max": float(counts.targets.high[j])}
    return {
        "rows": dict(counts.rows),
        "rows_dropped_missing_target": counts.n_rows_read - sum(counts.rows.values()),
        "features_in": len(sample.features),
        "unused_columns": [c for c in sample.frame.columns if c not in sample.features and c not in sample.targets],
        "features_encoded": len(prep.feature_names_),
        "numeric_features": prep.numeric_features,
        "categorical_features": prep.categorical_features,
        "targets": targets,
        "missing_imputed_in_train": prep.missing_in_train(),
        "missing_indicators": list(prep.indicators_),
        "columns": prep.column_table(),
        "column_warnings": list(sample.warnings),
        "in_memory": False,
        "stream": {"sample_rows": len(sample.frame), "chunk_rows": fit.table.cfg.stream.chunk_rows,
                   "shuffle_buffer": fit.table.cfg.stream.shuffle_buffer},
    }

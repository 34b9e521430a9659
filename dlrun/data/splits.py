"""Splits that random rows would get wrong, and k-fold cross-validation folds.

`data.split.group`: rows of one group (a patient, a customer) stay together, in one split and one fold, so a model is
never scored on a group it trained on. `data.split.order`: rows are ordered by a time column; val and test are the
latest rows, and fold i trains on the rows before block i only. `data.split.fold`: the non-test rows are cut into k
folds (stratified on the first class target), fold `index` validates, the rest train; the test rows are exactly
those of the run without folds, so a cv fold, an ensemble member and `dlrun train` are scored on the same test rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dlrun.config.schema import DataConfig
from dlrun.core.errors import DataError

UNUSED = "unused"  # an ordered fold's rows later than its validation block: neither trained on nor scored


def order_values(frame: pd.DataFrame, column: str) -> np.ndarray:
    """The order column as numbers (dates as nanoseconds); a missing or unreadable value is a DataError naming it."""
    values = frame[column]
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers[values.notna()].isna().any():
        numbers = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
        numbers = pd.Series(numbers.astype("int64"), index=values.index).where(numbers.notna())
    if numbers.isna().any():
        row = int(np.flatnonzero(numbers.isna().to_numpy())[0])
        raise DataError(f"data.split.order: column {column!r} must hold a number or date in every row, but row {row + 1} "
                        f"holds {values.iloc[row]!r}")
    return numbers.to_numpy(dtype=float)


def group_values(frame: pd.DataFrame, column: str) -> np.ndarray:
    """The group id of each row as text (a missing id is one group of its own, 'nan')."""
    return frame[column].astype(str).to_numpy()


def ordered_split(order: np.ndarray, fractions: tuple[float, float]) -> np.ndarray:
    """The earliest rows train, the next val, the latest test (ties keep the file's order)."""
    rows = np.argsort(order, kind="stable")
    n_val, n_test = (int(round(len(rows) * fraction)) for fraction in fractions)
    split = np.full(len(rows), "train", dtype=object)
    split[rows[len(rows) - n_test - n_val : len(rows) - n_test]] = "val"
    split[rows[len(rows) - n_test :]] = "test"
    return split


def grouped_split(groups: np.ndarray, fractions: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """Whole groups, in a seeded order, fill test, then val, then train, each up to its share of the rows."""
    names, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    n_test, n_val = (int(round(len(groups) * fraction)) for fraction in (fractions[1], fractions[0]))
    label = np.full(len(names), "train", dtype=object)
    n_in_test = n_in_val = 0
    for g in rng.permutation(len(names)):
        if n_in_test < n_test:
            label[g], n_in_test = "test", n_in_test + counts[g]
        elif n_in_val < n_val:
            label[g], n_in_val = "val", n_in_val + counts[g]
    return label[inverse]


def fold_numbers(frame: pd.DataFrame, split: np.ndarray, cfg: DataConfig, stratify_on: str | None, seed: int,
                 k: int, repeat: int) -> np.ndarray:
    """Each row's fold, 1..k, for the non-test rows (0 for test rows; with data.split.order, 0 also for the first,
    never-validated block). Seeded by (seed, repeat): repeats reshuffle the folds, the test rows stay."""
    rows = np.flatnonzero(split != "test")
    folds = np.zeros(len(frame), dtype=np.int64)
    rng = np.random.default_rng([seed, repeat, 0xF01D])
    if cfg.split.order is not None:
        order = order_values(frame, cfg.split.order)[rows]
        blocks = np.array_split(rows[np.argsort(order, kind="stable")], k + 1)  # block 0 only ever trains
        for number, block in enumerate(blocks):
            folds[block] = number
        if min(len(block) for block in blocks) == 0:
            raise DataError(f"data.split.order: {len(rows)} non-test rows are too few for {k} time-ordered folds")
        return folds
    if cfg.split.group is not None:
        groups = group_values(frame, cfg.split.group)[rows]
        names, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
        if len(names) < k:
            raise DataError(f"data.split.group: column {cfg.split.group!r} has {len(names)} groups outside the test "
                            f"split, too few for {k} folds")
        shuffled = rng.permutation(len(names))
        by_size = shuffled[np.argsort(-counts[shuffled], kind="stable")]  # largest first, ties in seeded order
        sizes, assigned = np.zeros(k, dtype=np.int64), np.zeros(len(names), dtype=np.int64)
        for g in by_size:  # each group to the fold with the fewest rows so far
            assigned[g] = int(np.argmin(sizes)) + 1
            sizes[assigned[g] - 1] += counts[g]
        folds[rows] = assigned[inverse]
        return folds
    if len(rows) < k:
        raise DataError(f"{len(rows)} non-test rows are too few for {k} folds")
    strata = frame[stratify_on].astype(str).to_numpy()[rows] if stratify_on else np.zeros(len(rows), dtype=int)
    offset = 0
    for stratum in pd.unique(strata):  # each class dealt round the folds in turn: every fold gets its share
        members = rows[rng.permutation(np.flatnonzero(strata == stratum))]
        folds[members] = (offset + np.arange(len(members))) % k + 1
        offset += len(members)
    return folds


def fold_split(frame: pd.DataFrame, split: np.ndarray, cfg: DataConfig, stratify_on: str | None, seed: int) -> np.ndarray:
    """The run's split for data.split.fold: test rows stay test, fold `index` validates, earlier folds (or, ordered,
    the blocks before it) train; an ordered fold's later blocks are unused."""
    fold = cfg.split.fold
    folds = fold_numbers(frame, split, cfg, stratify_on, seed, fold.k, fold.repeat)
    result = np.where(folds == fold.index, "val", "train").astype(object)
    if cfg.split.order is not None:
        result[folds > fold.index] = UNUSED
    result[split == "test"] = "test"
    if not np.any(result == "train"):
        raise DataError(f"fold {fold.index} of {fold.k} has no training rows")
    return result

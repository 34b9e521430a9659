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

SPLITS = ("train", "val", "test")
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


def require_column(frame: pd.DataFrame, column: str, field: str) -> None:
    if column not in frame.columns:
        raise DataError(f"{field}: column {column!r} is not in the data; columns are: {', '.join(map(str, frame.columns))}")


def split_by_fractions(frame: pd.DataFrame, cfg: DataConfig, class_target: str | None, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    fractions = (cfg.split.val, cfg.split.test)
    if cfg.split.order is not None:
        split = ordered_split(order_values(frame, cfg.split.order), fractions)
    elif cfg.split.group is not None:
        split = grouped_split(group_values(frame, cfg.split.group), fractions, rng)
    else:
        split = stratified_split(frame, class_target, fractions, rng)
    for name in SPLITS:
        if not np.any(split == name):
            raise DataError(f"the {name} split is empty: {len(frame)} rows are too few for data.split {fractions}"
                            + (f" in whole groups of {cfg.split.group!r}" if cfg.split.group else ""))
    return split


def stratified_split(frame: pd.DataFrame, class_target: str | None, fractions: tuple[float, float],
                      rng: np.random.Generator) -> np.ndarray:
    groups = frame[class_target].astype(str).to_numpy() if class_target else np.zeros(len(frame), dtype=int)
    split = np.empty(len(frame), dtype=object)
    for group in pd.unique(groups):
        rows = rng.permutation(np.flatnonzero(groups == group))
        n_val, n_test = (int(round(len(rows) * fraction)) for fraction in fractions)
        if n_val + n_test >= len(rows):  # a tiny class keeps at least one training row
            n_val, n_test = (len(rows) - 1) // 2, len(rows) - 1 - (len(rows) - 1) // 2
        split[rows[:n_val]] = "val"
        split[rows[n_val : n_val + n_test]] = "test"
        split[rows[n_val + n_test :]] = "train"
    return split


def split_from_column(frame: pd.DataFrame, column: str) -> np.ndarray:
    require_column(frame, column, "data.split.column")
    values = frame[column].astype(str).str.strip().str.lower().to_numpy()
    bad = sorted(set(values) - set(SPLITS))
    if bad:
        raise DataError(f"data.split.column {column!r} holds {bad[:5]}; allowed values are train, val, test")
    for name in SPLITS:
        if not np.any(values == name):
            raise DataError(f"data.split.column {column!r} has no {name!r} rows")
    return values.astype(object)

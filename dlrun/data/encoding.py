"""How cells become encoder keys: category keys, class labels, numeric dtypes and column medians. Shared by the
fitted preprocessor's fit and transform, so both spell a value the same way."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

MISSING = "__missing__"


def is_numeric(values: pd.Series) -> bool:
    return is_numeric_dtype(values.dtype)


def is_numeric_dtype(dtype) -> bool:
    return pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)


def nanmedian_columns(X: np.ndarray) -> np.ndarray:
    """np.nanmedian(X, axis=0) in one sort (numpy's loops over the columns in Python when there are NaNs)."""
    ordered = np.sort(X, axis=0)  # NaN last
    n_present = (~np.isnan(X)).sum(axis=0)
    low, high = np.maximum((n_present - 1) // 2, 0), np.maximum(n_present // 2, 0)
    columns = np.arange(X.shape[1])
    median = (ordered[low, columns] + ordered[high, columns]) / 2
    return np.where(n_present > 0, median, np.nan)


def finite_or_missing(values: pd.Series) -> pd.Series:
    """float64 with +-inf as missing: an overflowed cell is imputed like an empty one instead of poisoning the scaling."""
    numbers = values.astype(float)
    return numbers.where(np.isfinite(numbers), np.nan)


def category_codes(values: pd.Series, categories: list[str], fill: str) -> np.ndarray:
    """(n_rows,) int64 position of each row's category, -1 when it has none. Cleaned rows already hold the keys, so
    they are looked up as they are; only the rest (numbers, untrimmed text) are spelled as keys first."""
    index = pd.Index(categories, dtype=object)
    codes = index.get_indexer(values.astype(object))
    missing = values.isna().to_numpy()
    unmatched = (codes < 0) & ~missing
    if unmatched.any():
        codes[unmatched] = index.get_indexer(category_keys(values[unmatched]).astype(object))
    codes[missing] = index.get_indexer([fill])[0]
    return codes


def category_key(value: Any) -> str:
    return str(class_key(value)) if isinstance(value, (bool, int, float, np.number, np.bool_)) else str(value).strip()


def category_keys(values: pd.Series) -> pd.Series:
    """Categories as stripped strings; missing stays missing. pandas 3 reads text as `str` dtype, older as object.

    A column that arrives as numbers (a predict file holding only the categories 1 and 2) is spelled as training
    saw it in text: 1, not 1.0."""
    if is_numeric(values):  # built as a list: pandas would turn the ints back into floats beside a NaN
        values = pd.Series([v if pd.isna(v) else str(class_key(v)) for v in values], index=values.index, dtype=object)
    distinct = pd.unique(values.dropna())  # each distinct value stripped once, then mapped onto the rows
    stripped = {value: str(value).strip() for value in distinct}
    return values.map(stripped).astype(object).where(values.notna(), np.nan)


def category_counts(values: pd.Series) -> dict[str, int]:
    """Rows per category key of a column's present values, counted once per distinct value."""
    counts: dict[str, int] = {}
    for value, n in values.value_counts().items():
        key = category_key(value)
        counts[key] = counts.get(key, 0) + int(n)
    return counts


def class_key(value: Any) -> Any:
    """One spelling per class, so 1, 1.0 and np.int64(1) are the same label and labels stay JSON-native."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return int(value) if float(value).is_integer() else float(value)
    return str(value).strip()


def sorted_classes(values: pd.Series) -> list:
    keys = {class_key(v) for v in values.dropna()}
    return sorted(keys, key=lambda k: (isinstance(k, str), k if not isinstance(k, str) else 0, str(k)))

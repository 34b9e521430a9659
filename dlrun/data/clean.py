"""Cleaning by the column decisions: each column's cells read as its role says (numbers, 0/1, fractional years,
trimmed and case-merged categories), with the words read as missing counted.

`learn_columns` (training) also fills in what the decisions learn from the data: spellings, tokens, missing %,
distinct values. `read_columns` (predict, eval --data) applies them to new rows and counts what it had to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dlrun.core.errors import DataError
from dlrun.data import cells
from dlrun.data.columns import ColumnDecision

NUMBER_ROLES = ("numeric", "boolean", "date", "ordinal")  # roles whose cells become numbers


@dataclass
class ColumnCounts:
    """What reading one column of new rows took: words read as missing, and empty cells."""

    tokens: dict[str, int] = field(default_factory=dict)
    n_missing: int = 0  # empty cells and tokens together


def learn_columns(frame: pd.DataFrame, decisions: dict[str, ColumnDecision], merge_case: bool) -> pd.DataFrame:
    """The frame with every decided column cleaned; fills each decision's learnt fields in place."""
    block = _numeric_block(frame, decisions)
    cleaned = {}
    for name, decision in decisions.items():
        if name in block.columns or decision.role == "ignore" or _as_it_is(frame[name], decision):
            continue
        if decision.role == "category" and merge_case:
            words = {t: n for t, n in cells.distinct_counts(frame[name]).items() if t.lower() not in cells.TEXT_MISSING}
            decision.spellings = cells.spellings_of(words)
            decision.merged = _merged(words, decision.spellings)
        cleaned[name], decision.missing_tokens = _read(frame[name], decision, learning=True)
    # the learnt statistics: one vectorised pass over the numeric block, one call per other column
    if block.shape[1]:
        missing = block.isna().mean().to_numpy()
        n_distinct = _distinct_per_column(block.to_numpy())
        for j, name in enumerate(block.columns):
            decisions[name].missing_pct, decisions[name].n_distinct = round(100 * float(missing[j]), 2), int(n_distinct[j])
    for name, values in cleaned.items():
        decisions[name].missing_pct = round(100 * float(values.isna().mean()), 2)
        decisions[name].n_distinct = int(values.nunique())
    for name, decision in decisions.items():
        if name in frame.columns and name not in block.columns and name not in cleaned:  # ignored, or a numeric target
            decision.missing_pct = round(100 * float(frame[name].isna().mean()), 2)
            decision.n_distinct = int(frame[name].nunique())
    return _replace_columns(frame, block, cleaned)


def read_columns(frame: pd.DataFrame, decisions: dict[str, ColumnDecision]) -> tuple[pd.DataFrame, dict[str, ColumnCounts]]:
    """New rows read as training read its own: the cleaned frame and, per column, what reading it took."""
    present = {n: d for n, d in decisions.items() if n in frame.columns and d.role != "ignore"}
    block = _numeric_block(frame, present)
    counts = {name: ColumnCounts({}, int(n)) for name, n in block.isna().sum().items()}
    cleaned = {}
    for name, decision in present.items():
        if name not in block.columns and not _as_it_is(frame[name], decision):
            cleaned[name], tokens = _read(frame[name], decision, learning=False)
            counts[name] = ColumnCounts(tokens, int(cleaned[name].isna().sum()))
    return _replace_columns(frame, block, cleaned), counts


def _numeric_block(frame: pd.DataFrame, decisions: dict[str, ColumnDecision]) -> pd.DataFrame:
    """Numeric and 0/1 columns that are already numbers need no reading: converted in one block."""
    dtypes = frame.dtypes
    names = [n for n, d in decisions.items() if d.role in ("numeric", "boolean") and not d.target and n in frame.columns
             and pd.api.types.is_numeric_dtype(dtypes[n]) and not pd.api.types.is_bool_dtype(dtypes[n])]
    return frame[names].astype(float)


def _as_it_is(values: pd.Series, decision: ColumnDecision) -> bool:
    """A numeric target that arrives as numbers stays as it is: class labels 0 and 1 must not become 0.0 and 1.0."""
    return decision.target and decision.role == "numeric" and pd.api.types.is_numeric_dtype(values)


def _replace_columns(frame: pd.DataFrame, block: pd.DataFrame, cleaned: dict[str, pd.Series]) -> pd.DataFrame:
    """The frame with the cleaned columns in place, built once (assigning thousands of columns one by one is slow)."""
    replaced = set(block.columns) | set(cleaned)
    rest = frame[[c for c in frame.columns if c not in replaced]]
    parts = [rest, block, *(pd.DataFrame({name: values}) for name, values in cleaned.items())]
    return pd.concat(parts, axis=1)[list(frame.columns)]


def _distinct_per_column(X: np.ndarray) -> np.ndarray:
    """(n_columns,) distinct present values per column of a float matrix, by sorting each column once."""
    if len(X) == 0:
        return np.zeros(X.shape[1], dtype=int)
    ordered = np.sort(X, axis=0)  # NaN last
    present = ~np.isnan(ordered)
    new = np.vstack([present[:1], (ordered[1:] != ordered[:-1]) & present[1:]])
    return new.sum(axis=0)


def _read(values: pd.Series, decision: ColumnDecision, learning: bool) -> tuple[pd.Series, dict[str, int]]:
    """(cleaned values, {word read as missing: cells}); a cell the role cannot read and that is not such a word is a
    DataError naming the column, row and value. Each distinct value is read once, then mapped onto the rows."""
    distinct = pd.unique(values.dropna())
    texts = [cells.spell(value) for value in distinct]
    role = decision.role
    if role == "category":
        words = [text.lower() in cells.TEXT_MISSING for text in texts]
        spellings = decision.spellings
        read = [None if word else spellings.get(text.lower(), text) if spellings else text for text, word in zip(texts, words)]
        return _onto_rows(values, distinct, read, object), _token_counts(values, distinct, texts, words)
    if role == "numeric":
        read = [cells.number_of(text) for text in texts]
    elif role == "boolean":
        read = [cells.boolean_of(text) for text in texts]
    elif role == "date":
        years = cells.dates_of(pd.Series(texts, dtype=object), decision.day_first is not False) if texts else pd.Series([])
        read = [None if np.isnan(year) else float(year) for year in years]
    else:  # ordinal
        rank = {value.lower(): float(i) for i, value in enumerate(decision.order)}
        read = [rank.get(text.lower()) for text in texts]
    known = cells.MISSING_TOKENS | {t.lower() for t in decision.missing_tokens}
    # learning a numeric or date column: any word without a digit (as the rules allow); else the usual words for
    # "missing" and those training saw in this column
    loose = learning and role in ("numeric", "date")
    words = [r is None and (cells.is_token(t) if loose else t.lower() in known) for t, r in zip(texts, read)]
    bad = [r is None and not w for r, w in zip(read, words)]
    if any(bad):
        rows = np.flatnonzero(values.isin([v for v, b in zip(distinct, bad) if b]).to_numpy())
        allowed = {"numeric": "a number", "boolean": "yes/no, true/false, y/n or 1/0", "date": "a date",
                   "ordinal": f"one of {decision.order}"}[role]
        raise DataError(f"column {decision.name!r} must be {allowed} ({decision.why}), but row {rows[0] + 1} holds "
                        f"{cells.shown(values.iloc[rows[0]])} ({len(rows)} such value(s)); leave a cell empty to have it imputed")
    return _onto_rows(values, distinct, read, float), _token_counts(values, distinct, texts, words)


def _onto_rows(values: pd.Series, distinct, read: list, dtype) -> pd.Series:
    """Each row's value read through the table distinct -> read (missing rows stay missing)."""
    codes = pd.Index(distinct).get_indexer(values) if len(distinct) else np.full(len(values), -1)  # -1: a missing cell
    if dtype is float:
        table = np.array([np.nan if r is None else r for r in read] + [np.nan], dtype=float)
        return pd.Series(table[codes], index=values.index, dtype=float)
    table = np.array([np.nan if r is None else r for r in read] + [np.nan], dtype=object)
    return pd.Series(table[codes], index=values.index, dtype=object)


def _token_counts(values: pd.Series, distinct, texts: list[str], words: list[bool]) -> dict[str, int]:
    """{word, stripped: cells} for the distinct values flagged in `words`."""
    if not any(words):
        return {}
    per_value = values.value_counts()
    counts: dict[str, int] = {}
    for value, text, word in zip(distinct, texts, words):
        if word:
            counts[text] = counts.get(text, 0) + int(per_value[value])
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


def _merged(counts: dict[str, int], spellings: dict[str, str]) -> dict[str, list[str]]:
    """Kept spelling -> the other spellings merged into it (only where there were several)."""
    merged: dict[str, list[str]] = {}
    for spelling in counts:
        canonical = spellings.get(spelling.lower())
        if canonical is not None and spelling != canonical:
            merged.setdefault(canonical, []).append(spelling)
    return {k: sorted(v) for k, v in sorted(merged.items())}

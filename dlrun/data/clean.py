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
    cleaned = _numeric_block(frame, decisions)
    for name, decision in decisions.items():
        if name in cleaned or decision.role == "ignore":
            continue
        text = cells.text_of(frame[name])
        if decision.role == "category" and merge_case:
            decision.spellings = cells.spellings_of(text.where(~text.str.lower().isin(cells.TEXT_MISSING)))
        values, tokens = _read(frame[name], text, decision, learning=True)
        decision.missing_tokens = tokens
        if decision.role == "category":
            decision.merged = _merged(text.dropna(), decision.spellings)
        cleaned[name] = values
    for name, decision in decisions.items():
        if decision.role == "ignore":
            decision.missing_pct = round(100 * float(frame[name].isna().mean()), 2)
            decision.n_distinct = int(frame[name].nunique())
        elif name in cleaned:
            decision.missing_pct = round(100 * float(cleaned[name].isna().mean()), 2)
            decision.n_distinct = int(cleaned[name].nunique())
    out = frame.copy()
    for name, values in cleaned.items():
        out[name] = values
    return out


def read_columns(frame: pd.DataFrame, decisions: dict[str, ColumnDecision]) -> tuple[pd.DataFrame, dict[str, ColumnCounts]]:
    """New rows read as training read its own: the cleaned frame and, per column, what reading it took."""
    counts, out = {}, frame.copy()
    fast = _numeric_block(frame, {n: d for n, d in decisions.items() if n in frame.columns})
    for name, decision in decisions.items():
        if name not in frame.columns or decision.role == "ignore":
            continue
        if name in fast:
            values, tokens = fast[name], {}
        else:
            values, tokens = _read(frame[name], cells.text_of(frame[name]), decision, learning=False)
        out[name] = values
        counts[name] = ColumnCounts(tokens, int(values.isna().sum()))
    return out, counts


def _numeric_block(frame: pd.DataFrame, decisions: dict[str, ColumnDecision]) -> dict[str, pd.Series]:
    """Numeric and 0/1 columns that are already numbers need no reading: converted in one block."""
    names = [n for n, d in decisions.items() if d.role in ("numeric", "boolean") and n in frame.columns
             and pd.api.types.is_numeric_dtype(frame[n]) and not pd.api.types.is_bool_dtype(frame[n])]
    if not names:
        return {}
    block = frame[names].astype(float)
    return {name: block[name] for name in names}


def _read(values: pd.Series, text: pd.Series, decision: ColumnDecision, learning: bool) -> tuple[pd.Series, dict[str, int]]:
    """(cleaned values, {word read as missing: cells}); a cell the role cannot read and that is not such a word is a
    DataError naming the column, row and value."""
    role = decision.role
    if role == "category":
        empty = text.str.lower().isin(cells.TEXT_MISSING)
        tokens = _token_counts(text[empty & text.notna()])
        kept = text.where(~empty)
        return (cells.merge_spellings(kept, decision.spellings) if decision.spellings else kept), tokens
    if role == "numeric":
        read = cells.numbers_of(text)
    elif role == "boolean":
        read = cells.booleans_of(text)
    elif role == "date":
        read = cells.dates_of(text, decision.day_first is not False)
    else:  # ordinal
        rank = {value.lower(): float(i) for i, value in enumerate(decision.order)}
        read = text.str.lower().map(rank).astype(float)
    unread = text.notna() & read.isna()
    if learning:
        words = unread & cells.is_token(text)
    else:  # new rows: the usual words for "missing" and those training saw in this column
        known = cells.MISSING_TOKENS | {t.lower() for t in decision.missing_tokens}
        words = unread & text.str.lower().isin(known)
    bad = unread & ~words
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        allowed = {"numeric": "a number", "boolean": "yes/no, true/false, y/n or 1/0", "date": "a date",
                   "ordinal": f"one of {decision.order}"}[role]
        raise DataError(f"column {decision.name!r} must be {allowed} ({decision.why}), but row {row + 1} holds "
                        f"{values.iloc[row]!r} ({int(bad.sum())} such value(s)); leave a cell empty to have it imputed")
    return read.astype(float), _token_counts(text[words])


def _token_counts(words: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in words.value_counts().items()}


def _merged(text: pd.Series, spellings: dict[str, str]) -> dict[str, list[str]]:
    """Kept spelling -> the other spellings merged into it (only where there were several)."""
    distinct = pd.Series(text.unique(), dtype=object)
    kept = distinct.str.lower().map(spellings)
    merged: dict[str, list[str]] = {}
    for spelling, canonical in zip(distinct, kept):
        if isinstance(canonical, str) and spelling != canonical:
            merged.setdefault(canonical, []).append(spelling)
    return {k: sorted(v) for k, v in sorted(merged.items())}

"""New rows against what the model was trained on: read them as training read its own, and count per column what
the model has never seen (unseen categories, words read as missing, empty cells, numbers beyond the training range).

Predict and `eval --data` print the counts; with `strict` any of them is a DataError naming the rows and columns.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from dlrun.core.errors import DataError
from dlrun.data.preprocess import Preprocessor
from dlrun.data.chunks import table_chunks
from dlrun.data.sources import is_columnar

MAX_ROWS_NAMED = 10  # rows listed per column and kind in a --strict message


@dataclass(frozen=True)
class ColumnFindings:
    """One column of new rows: row numbers (1 = the first data row) per kind of finding."""

    column: str
    unseen: list[int] = field(default_factory=list)  # a category the model has no input for
    tokens: dict[str, int] = field(default_factory=dict)  # words read as missing -> cells
    token_rows: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)  # empty cells (imputed)
    out_of_range: list[int] = field(default_factory=list)  # below the training minimum or above its maximum
    unseen_values: list[str] = field(default_factory=list)  # a few of them, for the message

    def plus(self, later: "ColumnFindings") -> "ColumnFindings":
        """These findings and those of later rows of the same column."""
        tokens = dict(self.tokens)
        for token, n in later.tokens.items():
            tokens[token] = tokens.get(token, 0) + n
        return ColumnFindings(self.column, self.unseen + later.unseen, tokens, self.token_rows + later.token_rows,
                              self.missing + later.missing, self.out_of_range + later.out_of_range,
                              sorted(set(self.unseen_values) | set(later.unseen_values))[:5])

    def counts(self) -> dict[str, int]:
        return {"unseen categories": len(self.unseen), "tokens read as missing": len(self.token_rows),
                "missing values": len(self.missing), "outside the training range": len(self.out_of_range)}

    def describe(self, name_rows: bool = False) -> str:
        parts = []
        for kind, rows in (("unseen categories", self.unseen), ("tokens read as missing", self.token_rows),
                           ("missing values", self.missing), ("outside the training range", self.out_of_range)):
            if rows:
                detail = ""
                if kind == "unseen categories" and self.unseen_values:
                    detail = f" ({', '.join(map(repr, self.unseen_values))})"
                elif kind == "tokens read as missing":
                    detail = f" ({', '.join(f'{t!r} x{n}' for t, n in self.tokens.items())})"
                where = f" in rows {_rows_text(rows)}" if name_rows else ""
                parts.append(f"{len(rows)} {kind}{detail}{where}")
        return f"column {self.column!r}: " + "; ".join(parts)


@dataclass(frozen=True)
class RowCheck:
    n_rows: int
    columns: list[ColumnFindings]  # only the columns with a finding

    @property
    def clean(self) -> bool:
        return not self.columns

    def lines(self) -> list[str]:
        return [findings.describe() for findings in self.columns]

    @staticmethod
    def combined(checks: list["RowCheck"]) -> "RowCheck":
        """One check of all rows from the checks of consecutive slices of them."""
        by_column: dict[str, ColumnFindings] = {}
        for check in checks:
            for found in check.columns:
                earlier = by_column.get(found.column)
                by_column[found.column] = found if earlier is None else earlier.plus(found)
        return RowCheck(sum(check.n_rows for check in checks), list(by_column.values()))

    def to_dict(self) -> dict[str, dict[str, int]]:
        return {f.column: {k: v for k, v in f.counts().items() if v} for f in self.columns}


def new_row_chunks(prep: Preprocessor, path: Path | str, chunk_rows: int,
                   with_text: bool = True) -> Iterator[tuple[pd.DataFrame | None, pd.DataFrame, RowCheck]]:
    """Slices of at most chunk_rows new rows: (the rows exactly as written, or None without `with_text`; the rows read
    for the model; what reading them found, row numbers counted from the file's first data row)."""
    typed = table_chunks(path, chunk_rows, keep_tokens=bool(prep.columns))  # a run from before column decisions: the old reading
    # Parquet cells are typed values, not text to keep as written: the rows as read are the rows as given.
    columnar = is_columnar(path)
    written = (table_chunks(path, chunk_rows, as_text=True) if with_text and not columnar else itertools.repeat(None))
    first_row = 0
    for as_written, frame in zip(written, typed):
        if with_text and columnar:
            as_written = frame
        cleaned, check = check_rows(prep, frame, first_row)
        first_row += len(frame)
        yield as_written, cleaned, check


def check_rows(prep: Preprocessor, frame: pd.DataFrame, first_row: int = 0) -> tuple[pd.DataFrame, RowCheck]:
    """Clean new rows with the fitted column decisions and count, per feature column, what the model never saw."""
    prep.require_columns(frame)
    cleaned, counts = prep.read_rows(frame)
    findings = []
    for column in prep.features:
        values, count = cleaned[column], counts.get(column)
        missing = values.isna().to_numpy()
        token_rows = _token_rows(frame[column], cleaned[column]) if count and count.tokens else np.zeros(len(values), bool)
        unseen, out_of_range, examples = np.zeros(len(values), bool), np.zeros(len(values), bool), []
        if column in prep.categorical_:
            unseen = prep.unseen_categories(column, values)
            examples = sorted({str(v) for v in values[unseen]})[:5]
        else:
            low, high = prep.numeric_range(column)
            numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
            if low is not None:
                with np.errstate(invalid="ignore"):
                    out_of_range = (numbers < low) | (numbers > high)
        found = ColumnFindings(column, _rows(unseen, first_row), dict(count.tokens) if count else {},
                               _rows(token_rows, first_row), _rows(missing & ~token_rows, first_row),
                               _rows(out_of_range, first_row), examples)
        if any(found.counts().values()):
            findings.append(found)
    return cleaned, RowCheck(len(frame), findings)


def require_clean(check: RowCheck, source: str) -> None:
    """--strict: any finding is an error naming the rows and columns."""
    if not check.clean:
        details = "; ".join(f.describe(name_rows=True) for f in check.columns)
        raise DataError(f"--strict: {source} has rows the model was not trained on: {details}")


def _token_rows(raw: pd.Series, cleaned: pd.Series) -> np.ndarray:
    """Cells that held text but were read as missing."""
    text = raw.astype("string").str.strip()
    return (text.notna() & (text != "") & cleaned.isna()).to_numpy(dtype=bool)


def _rows(mask: np.ndarray, first_row: int) -> list[int]:
    return [first_row + int(i) + 1 for i in np.flatnonzero(mask)]


def _rows_text(rows: list[int]) -> str:
    shown = ", ".join(map(str, rows[:MAX_ROWS_NAMED]))
    return shown + (f" and {len(rows) - MAX_ROWS_NAMED} more" if len(rows) > MAX_ROWS_NAMED else "")

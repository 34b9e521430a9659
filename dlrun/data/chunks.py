"""A big CSV a slice at a time, exactly as `read_csv` would read it whole: what predict and eval score in chunks.

read_csv decides some things per column from every row (the dtype pandas infers, numbers written as text, dates);
read in slices, one slice could decide differently from the whole file. So a first pass reads the slices and checks
that every slice decides alike; only then are the slices used. A file where they differ (a column of integers with a
gap in one slice, another separator, unnamed columns, a parse error) is read whole by read_csv, as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional, Sequence

import pandas as pd

from dlrun.data.load import MISSING_MARKERS, _number_from_text, _years_from_dates, read_csv
from dlrun.data.sources import parquet_chunks, resolve_source


def table_chunks(path: Path | str, chunk_rows: int, keep_tokens: bool = False, as_text: bool = False,
                 columns: Optional[Sequence[str]] = None) -> Iterator[pd.DataFrame]:
    """The rows of a data.path (CSV or Parquet, one file, a directory of parts or a glob) in frames of at most
    chunk_rows rows, the row index counting on across chunks and files; `columns` projects Parquet (CSV reads all)."""
    source = resolve_source(path)
    parts = (parquet_chunks(source, chunk_rows, columns) if source.kind == "parquet" else
             (chunk for f in source.files for chunk in csv_chunks(f, chunk_rows, keep_tokens=keep_tokens, as_text=as_text)))
    offset = 0
    for frame in parts:
        frame.index = pd.RangeIndex(offset, offset + len(frame))
        offset += len(frame)
        yield frame


def csv_chunks(path: Path, chunk_rows: int, keep_tokens: bool = False, as_text: bool = False) -> Iterator[pd.DataFrame]:
    """The rows of `path` as read_csv(path, keep_tokens, as_text) gives them, in frames of at most chunk_rows rows
    (row index continuing). Peak memory is a few slices, not the file; when slicing cannot give the same values, one
    frame of the whole file."""
    path = Path(path)
    if not _slices_read_alike(path, chunk_rows):
        yield read_csv(path, keep_tokens=keep_tokens, as_text=as_text)  # raises the DataError a bad file deserves
        return
    for raw in _raw_slices(path, chunk_rows, keep_tokens, as_text):
        raw.columns = [str(column).strip() for column in raw.columns]
        yield raw if keep_tokens or as_text else _convert(raw)


def _raw_slices(path: Path, chunk_rows: int, keep_tokens: bool = False, as_text: bool = False) -> Iterator[pd.DataFrame]:
    # The options read_csv's first attempt uses (comma, UTF-8); other files never reach here.
    options = dict(skipinitialspace=True, na_values=MISSING_MARKERS, encoding="utf-8")
    if keep_tokens:
        options.update(na_values=[""], keep_default_na=False)
    if as_text:
        options.update(dtype=str, skipinitialspace=False, na_filter=False)
    with pd.read_csv(path, chunksize=chunk_rows, **options) as reader:
        yield from reader


def _convert(raw: pd.DataFrame) -> pd.DataFrame:
    """What read_csv does to a whole frame after parsing, applied to one slice."""
    raw.columns = [str(column).strip() for column in raw.columns]
    return raw.apply(_number_from_text).apply(_years_from_dates)


def _slices_read_alike(path: Path, chunk_rows: int) -> bool:
    """Whether every slice gives each column the same dtype (after the text conversions) as every other slice, and
    the file is one read_csv reads on its first attempt (comma separated, UTF-8, named columns)."""
    dtypes: dict[str, set[str]] = {}  # column -> dtypes of the slices where it holds a value
    empty: set[str] = set()  # columns that are entirely missing in some slice (read as float64 there)
    n_slices = 0
    try:
        for raw in _raw_slices(path, chunk_rows):
            n_slices += 1
            if n_slices == 1:
                names = [str(column) for column in raw.columns]
                if raw.shape[1] == 1 or any(name.startswith("Unnamed:") for name in names):
                    return False  # another separator or a headerless column: read_csv's special cases
                if len({name.strip() for name in names}) != len(names):
                    return False  # names that collide once trimmed: read_csv reports them
            frame = _convert(raw)
            missing = frame.isna().all()
            for column, dtype in frame.dtypes.items():
                if missing[column]:
                    empty.add(column)
                else:
                    dtypes.setdefault(column, set()).add(str(dtype))
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):  # UnicodeDecodeError is a ValueError
        return False
    # One dtype per column across slices: pandas infers the same for the whole column. A slice where a text or float
    # column is all gaps holds the same NaNs as float64; next to integers or booleans the whole column would differ.
    return n_slices > 0 and all(
        len(kinds) == 1 and (column not in empty or next(iter(kinds)) in ("object", "str", "float64"))
        for column, kinds in dtypes.items())

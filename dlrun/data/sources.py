"""Where a table's rows come from: one CSV file (read as ever), a Parquet file, a directory of Parquet or CSV files,
or a glob. Parquet is read with pyarrow (the `scale` extra): only the columns asked for, row groups in batches.

Everything downstream sees pandas frames whose index counts the rows from the first file's first row, as one CSV
would give them, so cleaning, checks and error messages (row numbers) work the same for every source.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import pandas as pd

from dlrun.core.errors import DataError

PARQUET_SUFFIXES = (".parquet", ".pq")
GLOB_CHARACTERS = "*?["


@dataclass(frozen=True)
class Source:
    """The files a data.path names, in the order their rows are read, and their format."""

    path: str  # as the user wrote it
    files: tuple[Path, ...]
    kind: str  # "csv" | "parquet"

    @property
    def single_csv(self) -> bool:
        """One CSV file: the reading dlrun has always done (separators, encodings, formatted numbers)."""
        return self.kind == "csv" and len(self.files) == 1 and not _is_glob(self.path) and not Path(self.path).is_dir()


def resolve_source(path: Path | str) -> Source:
    """The files behind `path`; a path that names none, or mixes formats, is a DataError saying what was found."""
    text = str(path)
    if _is_glob(text):
        files = sorted(Path(match) for match in glob.glob(text) if Path(match).is_file())
        if not files:
            raise DataError(f"data.path {text!r} matches no file")
    elif Path(text).is_dir():
        files = sorted(f for f in Path(text).iterdir() if f.is_file() and _kind_of(f) is not None)
        if not files:
            raise DataError(f"{text} is a directory without .parquet or .csv files")
    else:
        files = [Path(text)]
        if not files[0].is_file():
            raise DataError(f"{'Parquet' if _kind_of(files[0]) == 'parquet' else 'CSV'} file not found: {text}")
    kinds = {_kind_of(f) or "csv" for f in files}
    if len(kinds) > 1:
        raise DataError(f"data.path {text!r} holds both Parquet and CSV files; point it at one format")
    return Source(text, tuple(files), kinds.pop())


def is_columnar(path: Path | str) -> bool:
    """Whether `path` is anything but one CSV file (cheap: for choosing a reader, not for validating)."""
    text = str(path)
    return _is_glob(text) or Path(text).is_dir() or _kind_of(Path(text)) == "parquet"


def read_parquet(source: Source, columns: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """Every row of a Parquet source as one frame; `columns` reads only those (the others are never decoded)."""
    pa, pq = _pyarrow()
    try:
        tables = [pq.read_table(f, columns=_present(pq, f, columns)) for f in source.files]
        table = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{source.path} is not a readable Parquet source: {str(exc).strip()}") from None
    frame = table.to_pandas()
    if len(frame) == 0:
        raise DataError(f"{source.path} has no data rows")
    return frame


def parquet_chunks(source: Source, chunk_rows: int, columns: Optional[Sequence[str]] = None) -> Iterator[pd.DataFrame]:
    """A Parquet source's rows in frames of at most chunk_rows rows: one row group decoded at a time, then cut into
    batches (peak memory: a row group, not the file). Not ParquetFile.iter_batches: in pyarrow 26 its memory grows
    with the rows read (by ~100 MB per million rows of 20 columns), where reading row group by row group stays flat."""
    pa, pq = _pyarrow()
    for f in source.files:
        try:
            reader = pq.ParquetFile(f)
            projected = _present(pq, f, columns)
            for group in range(reader.num_row_groups):
                for batch in reader.read_row_group(group, columns=projected).to_batches(max_chunksize=chunk_rows):
                    yield batch.to_pandas()
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{f} is not a readable Parquet file: {str(exc).strip()}") from None


def same_columns(frames: list[pd.DataFrame], source: Source) -> list[str]:
    """The column names every part shares; parts that differ are a DataError naming both."""
    names = list(frames[0].columns)
    for f, frame in zip(source.files[1:], frames[1:]):
        if set(frame.columns) != set(names):
            raise DataError(f"{f} has columns {list(frame.columns)}, but {source.files[0]} has {names}; every file of "
                            f"{source.path} needs the same columns")
    return names


def n_rows_and_columns(path: Path | str) -> tuple[int, int]:
    """(rows, columns) of the source: exact for Parquet (its footer), estimated for CSV from the file size and the
    bytes per line of its first 64 KiB, so deciding how to read a table costs no pass over it."""
    source = resolve_source(path)
    if source.kind == "parquet":
        _, pq = _pyarrow()
        metadata = [pq.ParquetFile(f).metadata for f in source.files]
        return sum(m.num_rows for m in metadata), metadata[0].num_columns
    n_rows, n_columns = 0, 0
    for f in source.files:
        with open(f, "rb") as fh:
            head = fh.read(65_536)
        lines = head.splitlines() or [b""]
        n_columns = max(n_columns, lines[0].count(b",") + 1)
        bytes_per_line = max(len(head) / max(len(lines), 1), 1.0)
        n_rows += int(f.stat().st_size / bytes_per_line)
    return n_rows, n_columns


def schema_columns(path: Path | str) -> list[str]:
    """Column names of the source's first file, without reading its rows (CSV: the header)."""
    source = resolve_source(path)
    if source.kind == "parquet":
        _, pq = _pyarrow()
        return list(pq.ParquetFile(source.files[0]).schema_arrow.names)
    return [str(c).strip() for c in pd.read_csv(source.files[0], nrows=0).columns]


def default_prediction_path(path: Path | str) -> Path:
    """Where predict writes without --output: beside the input, `<name>_predictions.csv`; for a glob, in its folder."""
    text = str(path)
    if _is_glob(text):
        return Path(text).parent / "predictions.csv"
    given = Path(text)
    return given.with_name(f"{given.name if given.is_dir() else given.stem}_predictions.csv")


def _present(pq, f: Path, columns: Optional[Sequence[str]]) -> Optional[list[str]]:
    """The asked columns this file holds (a missing one is reported by the column checks, naming it), or all."""
    if columns is None:
        return None
    names = set(pq.ParquetFile(f).schema_arrow.names)
    return [c for c in dict.fromkeys(columns) if c in names]


def _is_glob(text: str) -> bool:
    """A pattern, unless a file of that very name exists (data[1].csv)."""
    return any(ch in text for ch in GLOB_CHARACTERS) and not Path(text).exists()


def _kind_of(f: Path) -> str | None:
    suffix = f.suffix.lower()
    return "parquet" if suffix in PARQUET_SUFFIXES else "csv" if suffix in (".csv", ".tsv", ".txt") else None


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError("reading Parquet needs pyarrow: pip install 'dlrun[scale]'") from None
    return pa, pq

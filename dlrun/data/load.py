"""Stage 1, config -> frame: load the rows, check them against the config, and split them.

Everything a user's CSV can get wrong is caught here, with the column and value named.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dlrun.config.schema import DataConfig
from dlrun.core.errors import DataError
from dlrun.data import cells, splits
from dlrun.data.splits import require_column as _require_column
from dlrun.data.clean import learn_columns
from dlrun.data.columns import ColumnDecision, decide_columns, warnings_for
from dlrun.data.sources import read_parquet, resolve_source, same_columns


# Built-in data sets: the file they live in, their default target(s) and columns that are not features.
BUILTINS = {
    "animals": {"file": "animals.csv", "target": ["type"], "drop": ["name"]},
    "salary": {"file": "salary.csv", "target": ["wages"], "drop": [], "units": {"wages": "dollars/hour"}},
    "synthetic": {"file": None, "target": ["label", "salary"], "drop": [], "units": {"salary": "dollars/year"}},
}
# Read as missing besides pandas' defaults (NA, n/a, null, ...): UCI-style tables mark gaps with '?'.
MISSING_MARKERS = ["?"]
# The formats read_csv converts (spreadsheet numbers, ISO dates) are the column rules' own (cells.py).
NUMBER_AS_TEXT, DATE_AS_TEXT = cells.NUMBER_AS_TEXT, cells.ISO_DATE
# An integer-valued numeric target with at most this many distinct values is read as class labels.
MAX_INTEGER_CLASSES = 10


@dataclass(frozen=True)
class Dataset:
    """Rows ready for preprocessing: which columns play which role, and which split each row is in."""

    frame: pd.DataFrame  # one row per example, index 0..n-1
    features: list[str]
    targets: list[str]
    tasks: dict[str, str]  # target -> classification | regression
    split: np.ndarray  # (n_rows,) of "train" | "val" | "test"
    n_dropped_missing_target: int = 0
    columns: dict[str, ColumnDecision] = field(default_factory=dict)  # every column's role and why (columns.py)
    warnings: list[str] = field(default_factory=list)  # decisions a user should hear about before training

    def part(self, name: str) -> pd.DataFrame:
        return self.frame.loc[self.split == name]


def load_dataset(cfg: DataConfig, seed: int, tasks: dict[str, str] | None = None) -> Dataset:
    """Read the configured rows, resolve targets, features and tasks, and assign each row a split.

    `tasks`, when given (a fitted run), replaces inference so eval sees exactly what training saw.
    """
    if cfg.split.fold is not None and cfg.split.fold.split_seed is not None:
        seed = cfg.split.fold.split_seed  # a fold model's own seed starts its weights; its rows are the cv's
    return dataset_of(read_frame(cfg, seed), cfg, seed, tasks)


def dataset_of(frame: pd.DataFrame, cfg: DataConfig, seed: int, tasks: dict[str, str] | None = None) -> Dataset:
    """load_dataset on rows already read (a streamed table's sample decides its columns this way)."""
    targets, drop = resolve_targets(cfg)
    for column in targets:
        _require_column(frame, column, "data.target")
    candidates = resolve_features(cfg, frame, targets, drop)
    decisions = decide_columns(frame, cfg, targets, candidates, explicit_features=cfg.features is not None)
    for column in targets:
        if decisions[column].role == "ignore":
            raise DataError(f"data.columns: {column!r} is the target and cannot be ignore")
    frame = learn_columns(frame, decisions, cfg.merge_case)
    features = [column for column in candidates if decisions[column].role != "ignore"]
    for column in targets:
        if frame[column].isna().all():
            raise DataError(f"target {column!r} has no values: every cell of the column is empty")
    if tasks is None:
        tasks = {column: _task_for(cfg, frame[column], column, decisions[column].role) for column in targets}
    for column in targets:
        if tasks[column] == "regression":
            _require_numeric_target(frame[column], column)
        else:
            _require_usable_classes(frame[column], column)

    if not features:
        ignored = [c for c in candidates if decisions[c].role == "ignore"]
        raise DataError("no feature columns are left after removing targets and data.drop"
                        + (f"; ignored as identifiers or free text: {', '.join(ignored)} (declare a role in data.columns "
                           "to use one)" if ignored else ""))
    has_target = frame[targets].notna().all(axis=1)
    n_dropped = int((~has_target).sum())
    frame = frame.loc[has_target].reset_index(drop=True)
    if len(frame) == 0:
        raise DataError(f"no row has a value for target {', '.join(targets)}")
    split = assign_split(frame, cfg, targets, tasks, seed)
    unused = {c: "listed in data.drop" for c in drop} | ({cfg.split.column: "the split column (data.split.column)"}
                                                       if cfg.split.column else {})
    for column, why in unused.items():
        decisions.setdefault(column, ColumnDecision(column, "ignore", why))
    return Dataset(frame, features, targets, tasks, split, n_dropped, decisions, warnings_for(decisions))


def read_frame(cfg: DataConfig, seed: int) -> pd.DataFrame:
    if cfg.dataset == "synthetic":
        return make_synthetic(cfg.synthetic.n_samples, cfg.synthetic.n_features, cfg.synthetic.noise, seed)
    if cfg.dataset:
        return read_csv(builtin_path(BUILTINS[cfg.dataset]["file"]), keep_tokens=True)
    return read_table(cfg.path, keep_tokens=True, columns=used_columns(cfg))


def read_table(path: Path | str, keep_tokens: bool = False, as_text: bool = False,
               columns: list[str] | None = None) -> pd.DataFrame:
    """Every row of a data.path (sources.py: a CSV or Parquet file, a directory of parts, a glob) as one frame;
    `columns` projects Parquet to those columns (CSV reads them all). One CSV file reads as read_csv always has."""
    source = resolve_source(path)
    if source.kind == "parquet":
        return read_parquet(source, columns)
    if source.single_csv:
        return read_csv(source.files[0], keep_tokens=keep_tokens, as_text=as_text)
    frames = [read_csv(f, keep_tokens=keep_tokens, as_text=as_text) for f in source.files]
    return pd.concat(frames, ignore_index=True)[same_columns(frames, source)]


def used_columns(cfg: DataConfig) -> list[str] | None:
    """The columns a run reads when data.features names them (targets, features, split column), for a columnar source
    to read only those; None (every column) when the features are the table's other columns."""
    if cfg.features is None:
        return None
    targets, _ = resolve_targets(cfg)
    return [*targets, *cfg.features, *([cfg.split.column] if cfg.split.column else [])]


def read_csv(path: Path, keep_tokens: bool = False, as_text: bool = False) -> pd.DataFrame:
    """Read a CSV with a header; any failure becomes a DataError naming the file.

    keep_tokens: words such as `n/a` or `?` stay text and no column is converted, for the column rules
    (columns.py) to read and count; as_text: every cell exactly as written, to write input rows back unchanged."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a directory, not a CSV file")
    if not path.is_file():
        raise DataError(f"CSV file not found: {path}")
    try:
        frame = _read_with_separator(path, keep_tokens or as_text, as_text)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty: expected a header row and data rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path} is not a readable CSV (a header row, then rows; UTF-8 text): {str(exc).strip()}") from None
    if len(frame) == 0:
        raise DataError(f"{path} has a header but no data rows")
    unnamed = [str(column) for column in frame.columns if str(column).startswith("Unnamed:")]
    if len(unnamed) == len(frame.columns):
        raise DataError(f"{path} has no column names in its first row")
    frame.columns = _trimmed_names(path, frame.columns)
    if as_text:
        return frame
    if not keep_tokens:
        frame = frame.apply(_number_from_text).apply(_years_from_dates)
    # Headerless columns that are empty (a trailing comma) or a saved row index are artefacts, not data.
    return frame.drop(columns=[c for c in unnamed if frame[c].isna().all() or _is_row_index(frame[c])])


def _trimmed_names(path: Path, columns: pd.Index) -> list[str]:
    """Column names without surrounding spaces; two that become one (`size` and `size `) are a DataError naming both."""
    names = [str(column).strip() for column in columns]
    first: dict[str, str] = {}
    for raw, name in zip(columns, names):
        if name in first:
            raise DataError(f"{path}: columns {first[name]!r} and {str(raw)!r} have the same name once surrounding spaces "
                            "are trimmed; rename one of them")
        first[name] = str(raw)
    return names


def _number_from_text(values: pd.Series) -> pd.Series:
    """A text column whose every value is a formatted number ("1,250", "$40,000.50", "12.5%") becomes numeric:
    the formatting is an export artefact, and left as text each value would be its own category."""
    present = _text_matching(values, NUMBER_AS_TEXT)
    if present is None:
        return values
    digits = present.str.replace(r"[\s,$€£%]", "", regex=True)
    return pd.to_numeric(digits, errors="coerce").reindex(values.index)


def _years_from_dates(values: pd.Series) -> pd.Series:
    """A text column of dates becomes a number, the date as a fractional year (2024-07-02 -> 2024.5): as text,
    every date would be its own category (or the column would be dropped as an identifier)."""
    present = _text_matching(values, DATE_AS_TEXT)
    if present is None:
        return values
    dates = pd.to_datetime(present.str.replace("/", "-"), errors="coerce", utc=True, format="ISO8601")
    if dates.isna().any():  # a month 13 or a February 30: not dates after all
        return values
    return cells.fractional_years(dates).reindex(values.index)


def _text_matching(values: pd.Series, pattern: str) -> pd.Series | None:
    """The column's present values as stripped text, when it is a text column and every one of them matches pattern."""
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return None
    present = values.dropna().astype(str).str.strip()
    return present if len(present) and present.str.match(pattern).all() else None


def _is_row_index(values: pd.Series) -> bool:
    numbers = values.to_numpy()
    if not pd.api.types.is_integer_dtype(values) or len(numbers) == 0:
        return False
    return bool(np.array_equal(numbers, np.arange(numbers[0], numbers[0] + len(numbers))) and numbers[0] in (0, 1))


def _read_with_separator(path: Path, keep_tokens: bool = False, as_text: bool = False) -> pd.DataFrame:
    """Comma first; a single column whose header holds ';' or a tab means the file uses that separator instead.
    Text that is not UTF-8 is read as Latin-1 (spreadsheets often save CSV that way); a ';' file may use decimal commas."""
    try:
        return _read_sniffed(path, "utf-8", keep_tokens, as_text)
    except UnicodeDecodeError:
        return _read_sniffed(path, "latin-1", keep_tokens, as_text)


def _read_sniffed(path: Path, encoding: str, keep_tokens: bool, as_text: bool) -> pd.DataFrame:
    options = dict(skipinitialspace=True, na_values=MISSING_MARKERS, encoding=encoding)
    if keep_tokens:
        options.update(na_values=[""], keep_default_na=False)
    if as_text:
        options.update(dtype=str, skipinitialspace=False, na_filter=False)
    frame = pd.read_csv(path, **options)
    if frame.shape[1] == 1:
        header = str(frame.columns[0])
        if ";" in header:
            point, comma = pd.read_csv(path, sep=";", **options), pd.read_csv(path, sep=";", decimal=",", **options)
            return comma if _n_numeric(comma) > _n_numeric(point) else point
        if "\t" in header:
            return pd.read_csv(path, sep="\t", **options)
    return frame


def _n_numeric(frame: pd.DataFrame) -> int:
    return sum(pd.api.types.is_numeric_dtype(frame[column]) for column in frame.columns)


def make_synthetic(n_samples: int, n_features: int, noise: float, seed: int) -> pd.DataFrame:
    """Numeric features x0..x{k-1}; `label` = 1 where x0 + x1 (plus noise) > 0; a salary-like `salary` in dollars."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_features))  # (n_samples, n_features)
    label = (X[:, 0] + X[:, 1] + noise * rng.standard_normal(n_samples) > 0).astype(int)
    salary = (
        52_000
        + 11_000 * X[:, 0]
        + 6_000 * np.tanh(X[:, 1] * X[:, 0])
        + 4_000 * X[:, 1] ** 2
        + 20_000 * noise * rng.standard_normal(n_samples)
    )
    frame = pd.DataFrame(X.round(4), columns=[f"x{i}" for i in range(n_features)])
    frame["label"] = label
    frame["salary"] = salary.round(2)
    return frame


def resolve_targets(cfg: DataConfig) -> tuple[list[str], list[str]]:
    builtin = BUILTINS.get(cfg.dataset, {})
    target = cfg.target if cfg.target is not None else builtin["target"]
    targets = [target] if isinstance(target, str) else list(target)
    return targets, list(cfg.drop) + builtin.get("drop", [])


def resolve_units(cfg: DataConfig) -> dict[str, str]:
    """Units of regression targets: the built-in data set's, overridden by the config's."""
    return {**BUILTINS.get(cfg.dataset, {}).get("units", {}), **cfg.units}


def resolve_features(cfg: DataConfig, frame: pd.DataFrame, targets: list[str], drop: list[str]) -> list[str]:
    for column in drop:
        _require_column(frame, column, "data.drop")
    dropped_targets = sorted(set(drop) & set(targets))
    if dropped_targets:
        raise DataError(f"data.drop includes the target column(s) {dropped_targets}; a target cannot be dropped")
    if cfg.features is not None:
        for column in cfg.features:
            _require_column(frame, column, "data.features")
        repeated = sorted({c for c in cfg.features if cfg.features.count(c) > 1})
        if repeated:
            raise DataError(f"data.features names {repeated} more than once")
        for others, role in ((targets, "target"), (drop, "data.drop"), ([cfg.split.column] if cfg.split.column else [], "data.split.column")):
            overlap = sorted(set(cfg.features) & set(others))
            if overlap:
                raise DataError(f"data.features includes {overlap}, which is also a {role} column; a column has one role")
        features = list(cfg.features)
    else:
        excluded = set(targets) | set(drop) | ({cfg.split.column} if cfg.split.column else set())
        features = [column for column in frame.columns if column not in excluded]
    if not features:
        raise DataError("no feature columns are left after removing targets and data.drop")
    return features


def infer_task(values: pd.Series) -> str:
    """Text, booleans and integer codes with few distinct values are classes; other numbers are regression."""
    present = values.dropna()
    if not pd.api.types.is_numeric_dtype(present) or pd.api.types.is_bool_dtype(present):
        return "classification"
    numbers = present.to_numpy(dtype=float)
    integral = bool(np.isfinite(numbers).all() and (np.floor(numbers) == numbers).all())
    return "classification" if integral and present.nunique() <= MAX_INTEGER_CLASSES else "regression"


def _task_for(cfg: DataConfig, values: pd.Series, column: str, role: str) -> str:
    if isinstance(cfg.task, str):
        return cfg.task
    if isinstance(cfg.task, dict) and column in cfg.task:
        return cfg.task[column]
    if role in ("category", "ordinal"):
        return "classification"
    return "regression" if role in ("date",) or (role == "numeric" and column in cfg.columns) else infer_task(values)


def _require_numeric_target(values: pd.Series, column: str) -> None:
    present = values.dropna()
    numeric = pd.to_numeric(present, errors="coerce")
    bad = present[numeric.isna()]
    if len(bad):
        raise DataError(
            f"target {column!r} is set to regression but holds text, e.g. {bad.iloc[0]!r} in row {bad.index[0] + 1}; "
            "use task: classification or clean the column"
        )
    infinite = present[~np.isfinite(numeric.to_numpy(dtype=float))]
    if len(infinite):
        raise DataError(f"target {column!r} holds {infinite.iloc[0]} in row {infinite.index[0] + 1}; a regression target must be finite")


def _require_usable_classes(values: pd.Series, column: str) -> None:
    n_classes, n_rows = values.nunique(), int(values.notna().sum())
    if n_classes < 2:
        raise DataError(f"classification target {column!r} needs at least 2 classes, but holds only {values.dropna().unique().tolist()}")
    if n_rows >= 20 and n_classes > n_rows / 2:
        raise DataError(
            f"classification target {column!r} has {n_classes} distinct values in {n_rows} rows, so most classes have a "
            "single row; for a numeric quantity set data.task: regression"
        )


def assign_split(frame: pd.DataFrame, cfg: DataConfig, targets: list[str], tasks: dict[str, str], seed: int) -> np.ndarray:
    """Label each row train/val/test, from a split column or by seeded fractions, stratified on the first class target;
    whole groups or time order with data.split.group / order, and one cv fold's rows with data.split.fold (splits.py)."""
    class_target = next((t for t in targets if tasks[t] == "classification"), None)
    for column, key in ((cfg.split.group, "data.split.group"), (cfg.split.order, "data.split.order")):
        if column is not None:
            _require_column(frame, column, key)
    split = splits.split_from_column(frame, cfg.split.column) if cfg.split.column is not None else splits.split_by_fractions(
        frame, cfg, class_target, seed)
    return splits.fold_split(frame, split, cfg, class_target, seed) if cfg.split.fold is not None else split


def builtin_path(file: str) -> Path:
    """A built-in data set's CSV, shipped inside the package so an installed dlrun finds it from any directory."""
    from importlib.resources import files

    return Path(str(files("dlrun.data.builtin") / file))

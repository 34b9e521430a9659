"""Stage 2, frame -> arrays: impute, encode and scale, fitted on the training split only.

The fitted state is plain JSON (`to_dict` / `from_dict`), so a run directory never needs pickle to be reopened.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from dlrun.config.schema import PreprocessConfig
from dlrun.core.errors import DataError, RunError
from dlrun.data.clean import ColumnCounts, read_columns
from dlrun.data.cells import shown
from dlrun.data.columns import ColumnDecision
from dlrun.data.encoding import (MISSING, category_codes, category_counts, category_keys, class_key, finite_or_missing,
                                 is_numeric_dtype, nanmedian_columns, sorted_classes)
from dlrun.data.scaling import InputLayout, apply_scaler, fit_scaler, invert_scaler, quantile_bins

STATE_VERSION = 1


class Preprocessor:
    """Fit/transform for features and targets, following scikit-learn's contract: fitted state ends in `_`."""

    def __init__(self, cfg: PreprocessConfig, features: list[str], targets: list[str], tasks: dict[str, str],
                 columns: dict[str, ColumnDecision] | None = None):
        self.cfg = cfg
        self.features = list(features)
        self.targets = list(targets)
        self.tasks = dict(tasks)
        self.columns = dict(columns or {})  # how each column's cells are read (roles, spellings, tokens)

    # ---- fitting -------------------------------------------------------------------------------
    def fit(self, frame: pd.DataFrame) -> "Preprocessor":
        dtypes = frame.dtypes
        numeric = [column for column in self.features if is_numeric_dtype(dtypes[column])]
        self.numeric_: dict[str, dict[str, float]] = self._fit_numeric_block(frame[numeric])
        self.categorical_: dict[str, dict[str, Any]] = {}
        for column in self.features:
            if column not in self.numeric_:
                self.categorical_[column] = self._fit_categorical(frame[column])
        self.record_widths()
        self.targets_: dict[str, dict[str, Any]] = {}
        self._fit_targets(frame)
        self.bins_: list[list[float]] | None = None
        return self

    def record_widths(self) -> None:
        """Missing indicators and each column decision's encoded width, from the fitted numeric and category states."""
        # "was missing" as its own 0/1 input, after the one-hot blocks (so their positions do not move)
        self.indicators_: list[str] = [c for c, s in self.numeric_.items() if s["n_missing"]] if self.cfg.missing_indicators else []
        with_indicator = set(self.indicators_)
        for column, decision in self.columns.items():
            if column in self.numeric_:
                decision.encoded_width = 1 + (column in with_indicator)
            elif column in self.categorical_:
                decision.encoded_width = len(self.categorical_[column]["categories"])
            elif column in self.features or column in self.targets:
                decision.encoded_width = None
            else:
                decision.encoded_width = 0

    def _fit_targets(self, frame: pd.DataFrame) -> None:
        for column in self.targets:
            values = frame[column]
            if self.tasks[column] == "classification":
                self.targets_[column] = {"task": "classification", "classes": sorted_classes(values)}
            else:
                y = values.astype(float).to_numpy()
                std = float(y.std())
                state = {"task": "regression", "mean": float(y.mean()), "std": std if std > 0 else 1.0}
                if self.cfg.scale == "quantile":  # the one scaling that applies to targets: it is invertible
                    state["quantiles"] = fit_scaler("quantile", y)["quantiles"]
                self.targets_[column] = state

    def fit_bins(self, frame: pd.DataFrame, n_bins: int) -> "Preprocessor":
        """Quantile bins of each scaled numeric feature on the training rows, for piecewise-linear embeddings."""
        numeric = self.transform_features(frame)[:, : len(self.numeric_)]
        self.bins_ = [quantile_bins(numeric[:, j], n_bins) for j in range(numeric.shape[1])]
        return self

    def input_layout(self) -> InputLayout:
        # missing indicators sit after the one-hot blocks and, like them, pass through as 0/1 inputs
        n_onehot = sum(len(state["categories"]) for _, state in self._onehot_states()) + len(self.indicators_)
        cardinalities = [len(state["categories"]) for state in self.categorical_.values() if state.get("embed")]
        return InputLayout(len(self.numeric_), n_onehot, cardinalities, self.bins_)

    def _fit_numeric_block(self, block: pd.DataFrame) -> dict[str, dict[str, float]]:
        """Fill, centre and scale of every numeric column at once: one pass per statistic, not per column.
        Column-major so each column's sums run as numpy's pairwise sum of one column (the same floats as per column)."""
        if block.shape[1] == 0:
            return {}
        X = np.array(block.to_numpy(dtype=np.float64), order="F")  # (n_rows, n_numeric), a copy
        X[~np.isfinite(X)] = np.nan  # an overflowed cell is imputed like an empty one
        missing = np.isnan(X)
        n_missing, empty = missing.sum(axis=0), missing.all(axis=0)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-empty column: its fill is 0 below
            fill = nanmedian_columns(X) if self.cfg.numeric_impute == "median" else np.nanmean(X, axis=0)
            low, high = np.nanmin(X, axis=0), np.nanmax(X, axis=0)
        fill = np.where(empty, 0.0, fill)
        filled = np.where(missing, fill, X)
        if self.cfg.scale == "standard":
            center, spread = filled.mean(axis=0), filled.std(axis=0)
        elif self.cfg.scale == "minmax":
            center, spread = filled.min(axis=0), filled.max(axis=0) - filled.min(axis=0)
        else:  # none; robust and quantile are fitted per column below (order statistics)
            center, spread = np.zeros(X.shape[1]), np.ones(X.shape[1])
        spread = np.where(spread > 0, spread, 1.0)
        per_column = self.cfg.scale in ("robust", "quantile")
        return {column: {"fill": float(fill[j]), "center": float(center[j]), "scale": float(spread[j]),
                         **(fit_scaler(self.cfg.scale, filled[:, j]) if per_column else {}),
                         "n_missing": int(n_missing[j]),
                         "min": None if empty[j] else float(low[j]), "max": None if empty[j] else float(high[j])}
                for j, column in enumerate(block.columns)}

    def _fit_categorical(self, values: pd.Series) -> dict[str, Any]:
        return self.categorical_state(category_counts(values), int(values.isna().sum()))

    def categorical_state(self, counts: dict[str, int], n_missing: int) -> dict[str, Any]:
        """A categorical feature's fitted state from its rows per key and its empty cells (also summed over chunks
        by a streamed fit)."""
        counts = dict(counts)
        fill = MISSING
        if self.cfg.categorical_impute == "most_frequent" and counts:
            fill = min(counts.items(), key=lambda item: (-item[1], item[0]))[0]
        if n_missing:
            counts[fill] = counts.get(fill, 0) + n_missing
        # Most frequent first, ties broken by name, so the encoding does not depend on row order.
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        categories = [name for name, _ in ranked[: self.cfg.max_categories]]
        state = {"categories": categories, "fill": fill, "n_missing": n_missing}
        if self.cfg.embed_categories_above is not None and len(categories) > self.cfg.embed_categories_above:
            state["embed"] = True  # one code column (a learned embedding in the model) instead of a one-hot block
        return state

    # ---- transforming --------------------------------------------------------------------------
    @property
    def feature_names_(self) -> list[str]:
        names = list(self.numeric_)
        for column, state in self._onehot_states():
            names.extend(f"{column}={category}" for category in state["categories"])
        return (names + [f"{column} (missing)" for column in self.indicators_]
                + [column for column, state in self.categorical_.items() if state.get("embed")])

    def _onehot_states(self) -> list[tuple[str, dict[str, Any]]]:
        return [(column, state) for column, state in self.categorical_.items() if not state.get("embed")]

    def transform_features(self, frame: pd.DataFrame) -> np.ndarray:
        """(n_rows, n_features_out) float32; checks the rows against the fitted schema first."""
        self.check_features(frame)
        blocks = []
        if self.numeric_:
            names = list(self.numeric_)
            block = frame[names]
            if not all(is_numeric_dtype(dtype) for dtype in block.dtypes):
                block = block.apply(pd.to_numeric, errors="coerce")
            X = block.to_numpy(dtype=np.float64)  # (n_rows, n_numeric)
            missing = ~np.isfinite(X)
            fill, center, scale = (np.array([s[key] for s in self.numeric_.values()]) for key in ("fill", "center", "scale"))
            filled = np.where(missing, fill, X)
            scaled = (filled - center) / scale
            for j, state in enumerate(self.numeric_.values()):
                if "clip" in state or "quantiles" in state:  # robust and quantile scaling, column by column
                    scaled[:, j] = apply_scaler(state, filled[:, j])
            blocks.append(scaled)
            position = {column: j for j, column in enumerate(names)}
            indicators = missing[:, [position[column] for column in self.indicators_]]
        embedded = []
        for column, state in self.categorical_.items():
            codes = category_codes(frame[column], state["categories"], state["fill"])
            if state.get("embed"):  # 0 = unseen, 1.. = the kept categories; after every other block
                embedded.append((codes + 1)[:, None].astype(np.float64))
                continue
            onehot = np.zeros((len(frame), len(state["categories"])), dtype=np.float64)
            known = codes >= 0  # an unseen category encodes as all zeros
            onehot[np.flatnonzero(known), codes[known]] = 1.0
            blocks.append(onehot)
        if self.indicators_:
            blocks.append(indicators.astype(np.float64))
        return np.concatenate(blocks + embedded, axis=1).astype(np.float32)

    def read_rows(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, ColumnCounts]]:
        """New rows read as training read its own (trimmed, case-merged, tokens as missing, dates as years), with
        what reading each column took; a run from before column decisions reads them as they are."""
        return read_columns(frame, self.columns)

    def unseen_categories(self, column: str, values: pd.Series) -> np.ndarray:
        """(n_rows,) bool: present values of a categorical feature that have no one-hot input (never seen, or rarer
        than the kept max_categories)."""
        keys = category_keys(values)
        return (keys.notna() & ~keys.isin(self.categorical_[column]["categories"])).to_numpy(dtype=bool)

    def numeric_range(self, column: str) -> tuple[float | None, float | None]:
        """The training split's smallest and largest value of a numeric feature (None when not recorded)."""
        state = self.numeric_.get(column, {})
        return state.get("min"), state.get("max")

    def column_table(self) -> list[dict[str, Any]]:
        """One row per column: role, why, missing %, distinct values, merged spellings, tokens, encoded width."""
        return [decision.table_row() for decision in self.columns.values()]

    def require_columns(self, frame: pd.DataFrame) -> None:
        missing = [column for column in self.features if column not in frame.columns]
        if missing:
            raise DataError(f"missing feature column(s): {', '.join(missing)}; the model needs {', '.join(self.features)}")

    def check_features(self, frame: pd.DataFrame) -> None:
        self.require_columns(frame)
        dtypes = frame.dtypes
        for column in self.numeric_:
            if is_numeric_dtype(dtypes[column]):
                continue
            present = frame[column].dropna()
            bad = present[pd.to_numeric(present, errors="coerce").isna()]
            if len(bad):
                raise DataError(
                    f"column {column!r} must be numeric, but row {bad.index[0] + 1} holds {shown(bad.iloc[0])} "
                    f"({len(bad)} such value(s)); leave a cell empty to have it imputed"
                )

    def transform_targets(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """Class targets as int64 indices (n_rows,); regression targets standardised float32 (n_rows,)."""
        encoded = {}
        for column, state in self.targets_.items():
            if column not in frame.columns:
                raise DataError(f"target column {column!r} is not in the data; columns are: {', '.join(map(str, frame.columns))}")
            values = frame[column]
            if values.isna().any():
                raise DataError(f"target column {column!r} has {int(values.isna().sum())} empty value(s)")
            if state["task"] == "classification":
                # Compared as text: a CSV that holds only the classes 1 and 2 reads them as numbers even when
                # training saw the text labels "1", "2" and "x".
                lookup = {str(c): i for i, c in enumerate(state["classes"])}
                keys = values.map(lambda v: str(class_key(v)))
                unknown = sorted(set(keys) - set(lookup), key=str)
                if unknown:
                    raise DataError(
                        f"target {column!r} holds class(es) {unknown[:5]} the model never saw; known classes: {state['classes']}"
                    )
                encoded[column] = keys.map(lookup).to_numpy(dtype=np.int64)
            else:
                numeric = finite_or_missing(pd.to_numeric(values, errors="coerce"))
                if numeric.isna().any():
                    row = int(np.flatnonzero(numeric.isna().to_numpy())[0])
                    raise DataError(f"target {column!r} must be a finite number, but row {row + 1} holds {shown(values.iloc[row])}")
                encoded[column] = self._scale_target(state, numeric.to_numpy(dtype=float)).astype(np.float32)
        return encoded

    @staticmethod
    def _scale_target(state: dict[str, Any], y: np.ndarray) -> np.ndarray:
        if "quantiles" in state:
            return apply_scaler(state, y)
        return (y - state["mean"]) / state["std"]

    # ---- what other stages ask of the fitted state (they never read its dicts) ---------------------
    def is_classification(self, target: str) -> bool:
        return self.targets_[target]["task"] == "classification"

    def to_original_units(self, target: str, scaled):
        """Scaled regression values (a numpy array or a tensor, any shape) back in the target's own units; a
        quantile-scaled target goes through its inverse transform (on the CPU, back on the tensor's device)."""
        state = self.targets_[target]
        if "quantiles" not in state:
            return scaled * state["std"] + state["mean"]
        if isinstance(scaled, np.ndarray):
            return invert_scaler(state, scaled)
        import torch

        return torch.from_numpy(invert_scaler(state, scaled.double().cpu().numpy())).to(scaled.device)

    def to_scaled_units(self, target: str, values: np.ndarray) -> np.ndarray:
        """Regression values in the target's own units, scaled as training scaled it (the inverse of to_original_units)."""
        return self._scale_target(self.targets_[target], np.asarray(values, dtype=float))

    def regression_scale(self, target: str) -> float:
        """The target's training standard deviation: one scaled unit in the target's own units."""
        return self.targets_[target]["std"]

    def classes(self, column: str) -> list:
        return self.targets_[column]["classes"]

    def n_outputs(self, target: str) -> int:
        """Width of the target's head: one logit per class, one value for a regression target."""
        return len(self.classes(target)) if self.is_classification(target) else 1

    def output_sizes(self) -> dict[str, int]:
        """Width of each head: one logit per class, one value per regression target."""
        return {target: self.n_outputs(target) for target in self.targets_}

    @property
    def numeric_features(self) -> list[str]:
        """Numeric input columns, in the order they lead the encoded matrix."""
        return list(self.numeric_)

    @property
    def categorical_features(self) -> list[str]:
        """Text input columns, each one-hot encoded after the numeric columns."""
        return list(self.categorical_)

    def onehot_blocks(self) -> list[slice]:
        """Columns of each categorical feature's one-hot block in the encoded matrix (after the numeric columns)."""
        blocks, start = [], len(self.numeric_)
        for _, state in self._onehot_states():
            blocks.append(slice(start, start + len(state["categories"])))
            start += len(state["categories"])
        return blocks

    def numeric_scaling(self, column: str) -> dict[str, Any]:
        """How a numeric feature becomes its input (a copy): `fill` for a missing cell, then apply_scaler's state
        (`center` and `scale`, with `clip` for robust and `quantiles` for quantile scaling)."""
        return {k: v for k, v in self.numeric_[column].items() if k not in ("n_missing", "min", "max")}

    def category_encoding(self, column: str) -> tuple[list[str], str, bool]:
        """A categorical feature's kept categories (one-hot order; code i + 1 when embedded), the category a missing
        cell takes, and whether it is embedded instead of one-hot encoded."""
        state = self.categorical_[column]
        return list(state["categories"]), state["fill"], bool(state.get("embed"))

    @property
    def missing_indicator_columns(self) -> list[str]:
        """Numeric features with a 0/1 "was missing" input, in the order those inputs follow the one-hot blocks."""
        return list(self.indicators_)

    def target_scaling(self, target: str) -> dict[str, Any]:
        """A regression target's scaling (a copy): `mean` and `std`, and `quantiles` when quantile-scaled."""
        return dict(self.targets_[target])

    def missing_in_train(self) -> dict[str, int]:
        """{column: empty cells imputed in the training split}, for the columns that had any."""
        return {c: s["n_missing"] for c, s in {**self.numeric_, **self.categorical_}.items() if s["n_missing"]}

    # ---- persistence ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "config": self.cfg.model_dump(),
            "features": self.features,
            "targets": self.targets,
            "tasks": self.tasks,
            "numeric": self.numeric_,
            "categorical": self.categorical_,
            "target_state": self.targets_,
            "bins": self.bins_,
            "feature_names": self.feature_names_,
            "indicators": self.indicators_,
            "columns": {name: decision.to_dict() for name, decision in self.columns.items()},
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "Preprocessor":
        try:
            if state["version"] != STATE_VERSION:
                raise RunError(f"preprocess.json has version {state['version']}; this dlrun reads version {STATE_VERSION}")
            columns = {name: ColumnDecision.from_dict(d) for name, d in state.get("columns", {}).items()}
            fitted = cls(PreprocessConfig(**state["config"]), state["features"], state["targets"], state["tasks"], columns)
            fitted.numeric_ = state["numeric"]
            fitted.indicators_ = list(state.get("indicators", []))
            fitted.categorical_ = state["categorical"]
            fitted.targets_ = state["target_state"]
            fitted.bins_ = state.get("bins")  # absent from runs saved before numeric embeddings existed
            _check_state(fitted)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RunError(f"preprocess.json is not a dlrun preprocessing state ({type(exc).__name__}: {exc})") from None
        return fitted


def _check_state(fitted: Preprocessor) -> None:
    """Every fitted entry has the fields and types transform needs; raises ValueError naming the first that does not."""
    def number(value: Any, where: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise ValueError(f"{where} must be a finite number, got {value!r}")

    if set(fitted.numeric_) | set(fitted.categorical_) != set(fitted.features):
        raise ValueError("numeric and categorical entries do not cover the features")
    for column, state in fitted.numeric_.items():
        for key in ("fill", "center", "scale"):
            number(state[key], f"numeric.{column}.{key}")
    for column, state in fitted.categorical_.items():
        if not isinstance(state["categories"], list) or not all(isinstance(c, str) for c in state["categories"]):
            raise ValueError(f"categorical.{column}.categories must be a list of strings")
        if not isinstance(state["fill"], str):
            raise ValueError(f"categorical.{column}.fill must be a string")
    if not set(fitted.indicators_) <= set(fitted.numeric_):
        raise ValueError("indicators name columns that are not numeric features")
    if set(fitted.targets_) != set(fitted.targets):
        raise ValueError("target_state does not match targets")
    for column, state in fitted.targets_.items():
        if state["task"] == "classification":
            if not isinstance(state["classes"], list) or len(state["classes"]) < 2:
                raise ValueError(f"target_state.{column}.classes must list at least 2 classes")
        elif state["task"] == "regression":
            number(state["mean"], f"target_state.{column}.mean")
            number(state["std"], f"target_state.{column}.std")
        else:
            raise ValueError(f"target_state.{column}.task must be classification or regression")

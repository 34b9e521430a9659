"""Numeric scaling fitted on the training split, its inverse for regression targets, and the quantile bins of
piecewise-linear embeddings. Every fitted state is a plain JSON dict (preprocess.json), never pickle.

- standard: (x - mean) / std.   minmax: (x - min) / (max - min).   none: x.
- robust: (x - median) / IQR, then smooth clipping x / sqrt(1 + (x / 3)^2) into (-3, 3): a heavy-tailed count column
  keeps its order without one outlier squeezing every other row towards zero (RealMLP, Holzmueller et al. 2024).
- quantile: each value's rank on the training column mapped to a standard normal, `n_quantiles = clip(n / 30, 10,
  1000)`; tiny noise (1e-5 std, seed 0) breaks ties while fitting, as TabM's reference code does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

SMOOTH_CLIP = 3.0  # robust: values this many IQRs from the median are squeezed; the output stays within (-3, 3)
QUANTILE_NOISE = 1e-5  # relative to the column's std: separates ties without moving any value visibly
EMBEDDED_CATEGORY_DIM = 8  # RealMLP's embedding size for high-cardinality categoricals


def n_quantiles(n_rows: int) -> int:
    return int(np.clip(n_rows // 30, 10, 1000))


def fit_scaler(kind: str, filled: np.ndarray) -> dict[str, Any]:
    """Fitted state of one numeric column (no missing values left): `center` and `scale` always, `quantiles` or
    `clip` for the kinds that need them."""
    if kind == "standard":
        center, spread = float(filled.mean()), float(filled.std())
    elif kind == "minmax":
        center, spread = float(filled.min()), float(filled.max() - filled.min())
    elif kind == "robust":
        q25, median, q75 = np.quantile(filled, [0.25, 0.5, 0.75])
        # A column whose middle half is one value (mostly-zero counts) falls back to its std, then to 1.
        center, spread = float(median), float(q75 - q25) or float(filled.std())
        return {"center": center, "scale": spread if spread > 0 else 1.0, "clip": SMOOTH_CLIP}
    elif kind == "quantile":
        std = float(filled.std())
        noisy = filled + np.random.default_rng(0).normal(0.0, QUANTILE_NOISE * (std if std > 0 else 1.0), filled.shape)
        levels = np.linspace(0.0, 1.0, n_quantiles(len(filled)))
        return {"center": 0.0, "scale": 1.0, "quantiles": np.quantile(noisy, levels).tolist()}
    else:
        center, spread = 0.0, 1.0
    return {"center": center, "scale": spread if spread > 0 else 1.0}


def apply_scaler(state: dict[str, Any], values: np.ndarray) -> np.ndarray:
    if "quantiles" in state:
        quantiles = np.asarray(state["quantiles"])
        # Ties in the fitted quantiles (a discrete column) map to the middle of their level range, as sklearn does.
        levels = np.linspace(0.0, 1.0, len(quantiles))
        uniform = 0.5 * (np.interp(values, quantiles, levels) - np.interp(-values, -quantiles[::-1], -levels[::-1]))
        return _normal_ppf(uniform)
    scaled = (values - state["center"]) / state["scale"]
    if "clip" in state:
        scaled = scaled / np.sqrt(1.0 + (scaled / state["clip"]) ** 2)
    return scaled


def invert_scaler(state: dict[str, Any], scaled: np.ndarray) -> np.ndarray:
    """apply_scaler's inverse, for regression targets (which never carry `clip`)."""
    if "quantiles" in state:
        quantiles = np.asarray(state["quantiles"])
        uniform = _normal_cdf(scaled)
        return np.interp(uniform, np.linspace(0.0, 1.0, len(quantiles)), quantiles)
    return scaled * state["scale"] + state["center"]


# Bounds of the normal quantile transform, as scikit-learn's QuantileTransformer: 1e-7 and 1 - 1e-7 map to about
# -5.2 and 5.2 instead of infinities.
_CLIP_UNIFORM = 1e-7


def _normal_ppf(uniform: np.ndarray) -> np.ndarray:
    from scipy.special import ndtri

    return ndtri(np.clip(uniform, _CLIP_UNIFORM, 1 - _CLIP_UNIFORM))


def _normal_cdf(values: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    return ndtr(values)


def quantile_bins(column: np.ndarray, n_bins: int) -> list[float]:
    """Bin edges of one scaled training column: distinct quantiles, at least two edges (a constant column gets a unit
    bin), as piecewise-linear embeddings need."""
    edges = np.unique(np.quantile(column, np.linspace(0.0, 1.0, n_bins + 1)))
    if len(edges) < 2:
        edges = np.array([edges[0], edges[0] + 1.0])
    return edges.tolist()


@dataclass(frozen=True)
class InputLayout:
    """How the encoded feature matrix is laid out, for models that treat column groups differently:
    (B, n_numeric) scaled numbers | (B, n_onehot) one-hot blocks | (B, len(cardinalities)) category codes
    (0 = unseen, 1.. = the kept categories) of the features embedded instead of one-hot."""

    n_numeric: int
    n_onehot: int
    cardinalities: list[int] = field(default_factory=list)
    bins: list[list[float]] | None = None  # per numeric column, when fitted for piecewise-linear embeddings

    @property
    def n_features(self) -> int:
        return self.n_numeric + self.n_onehot + len(self.cardinalities)

"""Fitted scaling that overflowed: values near the float limit (±1e308 in a feature, 1e300 in a target) make the
mean or spread infinite, and a run trained on them is NaN from its first step. Checked once, right after fitting."""

from __future__ import annotations

import math

from dlrun.core.errors import DataError
from dlrun.data.preprocess import Preprocessor


def require_finite_scaling(prep: Preprocessor) -> None:
    """Raise DataError naming the first column whose fitted fill, centre, scale, mean or spread is not finite."""
    fitted = [(column, state, ("fill", "center", "scale"), "feature") for column, state in prep.numeric_.items()]
    fitted += [(column, state, ("mean", "std"), "target") for column, state in prep.targets_.items()
               if state["task"] == "regression"]
    for column, state, keys, role in fitted:
        for key in keys:
            if not math.isfinite(state[key]):
                raise DataError(
                    f"{role} {column!r} holds values too large to scale (its {key} overflows to {state[key]}); "
                    "values near ±1e308 do not fit in a float computation: rescale the column (e.g. to thousands or "
                    "a log) or drop it with data.drop")

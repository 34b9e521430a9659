"""Prediction and confusion frames: a model's outputs in the user's units and class names."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from dlrun.data.preprocess import Preprocessor
from dlrun.metrics.score import confusion


def pred_column(target: str) -> str:
    return f"{target}_pred"


def proba_column(target: str, label: Any) -> str:
    return f"{target}_proba_{label}"


def prediction_columns(prep: Preprocessor) -> list[str]:
    """The prediction columns in the order prediction_frame writes them."""
    names = []
    for target in prep.targets:
        names.append(pred_column(target))
        if prep.is_classification(target):
            names.extend(proba_column(target, label) for label in prep.classes(target))
    return names


def prediction_frame(prep: Preprocessor, outputs: dict[str, torch.Tensor]) -> pd.DataFrame:
    """`<target>_pred` in original units or class names, and `<target>_proba_<class>` per class."""
    columns: dict[str, Any] = {}
    for target, out in outputs.items():
        if prep.is_classification(target):
            proba = out.float().softmax(dim=1).cpu().numpy()  # (n_rows, n_classes)
            classes = np.asarray(prep.classes(target), dtype=object)
            columns[pred_column(target)] = classes[proba.argmax(axis=1)]
            for k, name in enumerate(prep.classes(target)):
                columns[proba_column(target, name)] = proba[:, k]
        else:
            columns[pred_column(target)] = prep.to_original_units(target, out.squeeze(1).double().cpu().numpy())
    return pd.DataFrame(columns)


def with_predictions(rows: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """The rows followed by their prediction columns. Names stay unique: a prediction column wins over an input column
    of the same name (a feature called `y_pred` beside the target `y`), which is dropped."""
    kept = rows.drop(columns=[column for column in predictions.columns if column in rows.columns])
    return pd.concat([kept.reset_index(drop=True), predictions.reset_index(drop=True)], axis=1)


def confusion_frame(prep: Preprocessor, target: str, logits: torch.Tensor, y: torch.Tensor) -> pd.DataFrame:
    """Counts with true classes as rows and predicted classes as columns, both named."""
    classes = [str(c) for c in prep.classes(target)]
    counts = confusion(logits, y, len(classes)).cpu().numpy()
    frame = pd.DataFrame(counts, columns=[f"pred_{c}" for c in classes])
    frame.insert(0, "true", classes)
    return frame

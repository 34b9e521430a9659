"""Scores from model outputs, with torchmetrics; regression errors in the target's original units."""

from __future__ import annotations

import warnings

import torch

from dlrun.metrics.names import CLASSIFICATION_METRICS, REGRESSION_METRICS, flatten
from dlrun.data.preprocess import Preprocessor


class _TorchmetricsFunctional:
    """torchmetrics.functional, imported on first use: importing torchmetrics takes about 1.4 s (it loads scipy.signal
    and matplotlib when they are installed), which `dlrun predict` never needs."""

    def __getattr__(self, name: str):
        from torchmetrics import functional

        return getattr(functional, name)


M = _TorchmetricsFunctional()


def score(outputs: dict[str, torch.Tensor], truth: dict[str, torch.Tensor], prep: Preprocessor) -> dict[str, dict[str, float]]:
    """{target: {metric: value}} for one split. outputs are logits (B, C) or scaled values (B, 1)."""
    scores = {}
    for target, out in outputs.items():
        y = truth[target]
        if prep.targets_[target]["task"] == "classification":
            scores[target] = _classification(out, y, len(prep.classes(target)))
        else:
            scores[target] = _regression(out, y, prep, target)
    return scores


def confusion(logits: torch.Tensor, y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(n_classes, n_classes) counts, rows = true class, columns = predicted class."""
    return M.confusion_matrix(logits.argmax(dim=1), y, task="multiclass", num_classes=n_classes)


def _classification(logits: torch.Tensor, y: torch.Tensor, n_classes: int) -> dict[str, float]:
    pred = logits.argmax(dim=1)
    common = dict(task="multiclass", num_classes=n_classes)
    values = {
        "accuracy": M.accuracy(pred, y, average="micro", **common),
        "precision_macro": M.precision(pred, y, average="macro", **common),
        "recall_macro": M.recall(pred, y, average="macro", **common),
        "f1_macro": M.f1_score(pred, y, average="macro", **common),
        "auroc": _auroc(logits, y, n_classes),
    }
    return {name: float(value) for name, value in values.items()}


def _auroc(logits: torch.Tensor, y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Macro one-vs-rest AUROC over the classes present in `y` (a class with no rows has no defined AUROC)."""
    present = torch.bincount(y, minlength=n_classes) > 0
    if int(present.sum()) < 2:
        return torch.tensor(float("nan"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics warns about the absent classes we then leave out
        per_class = M.auroc(logits.float().softmax(dim=1), y, average="none", **dict(task="multiclass", num_classes=n_classes))
    return per_class[present].mean()


def _regression(out: torch.Tensor, y: torch.Tensor, prep: Preprocessor, target: str) -> dict[str, float]:
    pred = prep.to_original_units(target, out.squeeze(1))  # original units, e.g. dollars
    true = prep.to_original_units(target, y)
    values = {
        "mae": M.mean_absolute_error(pred, true),
        "rmse": M.mean_squared_error(pred, true).sqrt(),
        # R² does not depend on units; on the standardised values it escapes torchmetrics' absolute epsilon, which
        # reads a target measured in tiny units (1e-9) as constant.
        "r2": M.r2_score(out.squeeze(1).double(), y.double()) if len(true) > 1 else torch.tensor(float("nan")),
    }
    return {name: float(value) for name, value in values.items()}


def epoch_columns(tasks: dict[str, str]) -> list[str]:
    """The metric columns `fit` records each epoch, for checking a monitored metric before training."""
    per_target = {
        target: dict.fromkeys(CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS, 0.0)
        for target, task in tasks.items()
    }
    return ["train_loss", "val_loss", *flatten(per_target, "val")]

"""Scores from model outputs, computed here in float64; regression errors in the target's original units.

Each metric is a few tensor ops over a confusion matrix or the errors, written out rather than taken from
torchmetrics: importing torchmetrics (or any of its submodules, which import the package first) costs 1.4-2 s of
every `dlrun train`, as it loads scipy.signal and matplotlib, more than the salary run's whole training.
tests/test_metrics.py holds every metric equal to scikit-learn's.
"""

from __future__ import annotations

import torch

from dlrun.metrics.names import CLASSIFICATION_METRICS, REGRESSION_METRICS, flatten
from dlrun.data.preprocess import Preprocessor

NAN = float("nan")


def score(outputs: dict[str, torch.Tensor], truth: dict[str, torch.Tensor], prep: Preprocessor) -> dict[str, dict[str, float]]:
    """{target: {metric: value}} for one split. outputs are logits (B, C) or scaled values (B, 1)."""
    scores = {}
    for target, out in outputs.items():
        y = truth[target]
        if prep.is_classification(target):
            scores[target] = _classification(out, y, len(prep.classes(target)))
        else:
            scores[target] = _regression(out, y, prep, target)
    return scores


def confusion(logits: torch.Tensor, y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(n_classes, n_classes) counts, rows = true class, columns = predicted class."""
    cells = y * n_classes + logits.argmax(dim=1)  # (B,) the flat index of each row's (true, predicted) cell
    return torch.bincount(cells, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _classification(logits: torch.Tensor, y: torch.Tensor, n_classes: int) -> dict[str, float]:
    counts = confusion(logits, y, n_classes).double()
    tp = counts.diagonal()  # (C,)
    fp, fn = counts.sum(dim=0) - tp, counts.sum(dim=1) - tp
    # Macro averages run over the classes in the truth or the predictions (scikit-learn's labels); a class in
    # neither has no precision or recall to average. An empty denominator scores 0 (zero_division=0).
    seen = (tp + fp + fn) > 0
    return {
        "accuracy": _ratio(tp.sum(), counts.sum()).item(),
        "precision_macro": _ratio(tp, tp + fp)[seen].mean().item(),
        "recall_macro": _ratio(tp, tp + fn)[seen].mean().item(),
        "f1_macro": _ratio(2 * tp, 2 * tp + fp + fn)[seen].mean().item(),
        "auroc": _auroc(logits, y, n_classes),
    }


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return torch.where(den > 0, num / den.clamp(min=1), 0.0)


def _auroc(logits: torch.Tensor, y: torch.Tensor, n_classes: int) -> float:
    """Macro one-vs-rest AUROC over the classes present in `y` (a class with no rows has no defined AUROC)."""
    present = torch.bincount(y, minlength=n_classes) > 0
    proba = logits.float().softmax(dim=1)  # (B, C); ranked as float32 probabilities, ties included
    if int(present.sum()) < 2 or bool(proba.isnan().any()):
        return NAN
    per_class = [_binary_auroc(proba[:, k], y == k) for k in present.nonzero().flatten().tolist()]
    return float(sum(per_class) / len(per_class))


def _binary_auroc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """The area under the ROC curve of `scores` (B,) for the rows where `positive` (B,) is True, from the
    Mann-Whitney statistic: the chance a positive row scores above a negative one, a tie counting half. It equals
    scikit-learn's trapezoidal area, where a run of tied scores is one diagonal step of the curve."""
    _, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)  # distinct scores, ascending
    counts = counts.double()
    mid_rank = counts.cumsum(0) - (counts - 1) / 2  # the average 1-based rank of each distinct score's rows
    n_pos = int(positive.sum())
    n_neg = len(scores) - n_pos
    rank_sum = mid_rank[inverse][positive].sum().item()
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _regression(out: torch.Tensor, y: torch.Tensor, prep: Preprocessor, target: str) -> dict[str, float]:
    pred = prep.to_original_units(target, out.squeeze(1).double())  # original units, e.g. dollars
    true = prep.to_original_units(target, y.double())
    error = pred - true  # (B,)
    return {
        "mae": error.abs().mean().item(),
        "rmse": error.square().mean().sqrt().item(),
        # R² does not depend on units; computed on the standardised values, a target measured in tiny units (1e-9)
        # keeps its digits.
        "r2": _r2(out.squeeze(1).double(), y.double()) if len(true) > 1 else NAN,
    }


def _r2(pred: torch.Tensor, true: torch.Tensor) -> float:
    """1 - residual / total sum of squares; a constant truth scores 1 when predicted exactly, else 0 (scikit-learn's
    force_finite), instead of dividing by zero."""
    rss = (true - pred).square().sum().item()
    tss = (true - true.mean()).square().sum().item()
    if tss == 0:
        return 1.0 if rss == 0 else 0.0
    return 1 - rss / tss


def epoch_columns(tasks: dict[str, str]) -> list[str]:
    """The metric columns `fit` records each epoch, for checking a monitored metric before training."""
    per_target = {
        target: dict.fromkeys(CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS, 0.0)
        for target, task in tasks.items()
    }
    # a multi-target run also logs each head's own loss (training/losses.Criterion.per_target)
    losses = [f"{split}_{target}_loss" for target in tasks for split in ("train", "val")] if len(tasks) > 1 else []
    return ["train_loss", "val_loss", *losses, *flatten(per_target, "val")]

"""Warnings a user would want about a run's data and curves: a validation split too small for the metric early
stopping watches, and validation loss rising while training loss falls (overfitting)."""

from __future__ import annotations

from typing import Any, Optional

MIN_VAL_ROWS = 50  # fewer validation rows and the watched metric jumps by whole rows from epoch to epoch
MIN_VAL_ROWS_PER_CLASS = 10
OVERFIT_PATIENCE = 5  # epochs val_loss must stay above its minimum before it counts as rising
OVERFIT_RISE = 0.02  # ... by at least this fraction of the minimum


def validation_warnings(n_val: int, class_counts: dict[str, dict[str, int]], monitor: Optional[str]) -> list[str]:
    """class_counts: per classification target, rows per class in the validation split."""
    if monitor is None:
        return []
    lines = []
    if n_val < MIN_VAL_ROWS:
        lines.append(f"the validation split has {n_val} rows, too few for early stopping on {monitor} to be reliable "
                     f"(under {MIN_VAL_ROWS}); raise data.split.val or use more rows")
    for target, counts in class_counts.items():
        small = {name: n for name, n in counts.items() if n < MIN_VAL_ROWS_PER_CLASS}
        if small:
            listed = ", ".join(f"{name} {n}" for name, n in list(small.items())[:5])
            lines.append(f"the validation split has under {MIN_VAL_ROWS_PER_CLASS} rows of some {target} classes "
                         f"({listed}): {monitor} on them is noisy")
    return lines


def overfitting(history: list[dict[str, float]]) -> dict[str, Any] | None:
    """When validation loss rose for OVERFIT_PATIENCE epochs past its minimum while training loss kept falling:
    {began_epoch, best_val_epoch, message}; else None."""
    rows = [row for row in history if _finite(row.get("val_loss")) and _finite(row.get("train_loss"))]
    if len(rows) < OVERFIT_PATIENCE + 2:
        return None
    best = min(range(len(rows)), key=lambda i: rows[i]["val_loss"])
    after = rows[best + 1:]
    floor = rows[best]["val_loss"]
    if len(after) < OVERFIT_PATIENCE:
        return None
    rising = all(row["val_loss"] > floor for row in after) and after[-1]["val_loss"] > floor * (1 + OVERFIT_RISE)
    train_falling = after[-1]["train_loss"] < rows[best]["train_loss"]
    if not (rising and train_falling):
        return None
    began = int(after[0]["epoch"])
    message = (f"overfitting from epoch {began}: validation loss rose from {floor:.4g} (epoch {int(rows[best]['epoch'])}) "
               f"to {after[-1]['val_loss']:.4g} while training loss fell from {rows[best]['train_loss']:.4g} to "
               f"{after[-1]['train_loss']:.4g}; the best epoch's weights are kept. Regularise (model.dropout, "
               "optimizer.weight_decay) or stop earlier")
    return {"began_epoch": began, "best_val_epoch": int(rows[best]["epoch"]), "message": message}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and value == value and abs(value) != float("inf")

"""The names of the recorded metrics, which way is better and how they print, without torch: run listings and the
CLI's tables read these too."""

from __future__ import annotations

CLASSIFICATION_METRICS = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "auroc")
REGRESSION_METRICS = ("mae", "rmse", "r2")
# Metrics where larger is better; every other recorded metric (losses, errors) is minimised.
MAXIMISED = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "auroc", "r2")


def is_maximised(metric: str) -> bool:
    return metric.endswith(MAXIMISED)


def flatten(scores: dict[str, dict[str, float]], prefix: str) -> dict[str, float]:
    """{target: {metric: v}} -> {prefix_metric: v} for one target, {prefix_target_metric: v} for several."""
    single = len(scores) == 1
    return {
        f"{prefix}_{metric}" if single else f"{prefix}_{target}_{metric}": value
        for target, metrics in scores.items()
        for metric, value in metrics.items()
    }


def metric_label(metric: str, target: str, units: dict[str, str]) -> str:
    """A metric's name in a table: errors (mae, rmse) carry their target's unit, `rmse (dollars/hour)`."""
    return f"{metric} ({units[target]})" if metric in ("mae", "rmse") and target in units else metric


def format_value(value: float | None) -> str:
    """A metric for a table: 4 decimals, thousands separated from 100, tiny values keep their significant digits."""
    if value is None or value != value:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.2f}"
    return f"{value:.4g}" if 0 < abs(value) < 0.01 else f"{value:.4f}"  # errors in tiny units keep their digits

"""The names of the recorded metrics and which way is better, without torch: run listings read these too."""

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

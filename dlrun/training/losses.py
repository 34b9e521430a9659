"""The training objective: one loss per head, weighted and summed."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dlrun.config.schema import TrainConfig
from dlrun.data.preprocess import Preprocessor


class Criterion:
    """Weighted sum over targets of cross-entropy on logits (with label smoothing and class weights) or MSE on
    scaled values. Built once per run, so per-class weights are computed from the training labels only once."""

    def __init__(self, prep: Preprocessor, cfg: TrainConfig, train_y: dict[str, torch.Tensor]):
        self.parts = []  # (target, is_classification, loss weight, cross-entropy keyword arguments)
        for target in prep.targets:
            weight = cfg.loss_weight.get(target, 1.0)
            if prep.is_classification(target):
                options = {"label_smoothing": cfg.label_smoothing}
                if cfg.class_weights == "balanced":
                    options["weight"] = balanced_class_weights(train_y[target], len(prep.classes(target)))
                self.parts.append((target, True, weight, options))
            else:
                self.parts.append((target, False, weight, {}))

    def __call__(self, outputs: dict[str, torch.Tensor], y: dict[str, torch.Tensor]) -> torch.Tensor:
        total = None
        for term in self.terms(outputs, y):
            total = term if total is None else total + term
        return total

    def terms(self, outputs: dict[str, torch.Tensor], y: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Each target's weighted loss term (0-dim), in head order; the loss is their sum."""
        terms = []
        for target, is_classification, weight, options in self.parts:
            out, truth = outputs[target], y[target]
            if out.dim() == 3:  # an ensemble in training, (B, k, n_outputs): the mean of the k members' losses
                out, truth = out.flatten(0, 1), truth.repeat_interleave(out.shape[1])
            if is_classification:
                loss = F.cross_entropy(out, truth, **options)
            else:
                loss = F.mse_loss(out.squeeze(1), truth)
            if weight != 1.0:  # each extra op is an autograd node on every step
                loss = weight * loss
            terms.append(loss)
        return tuple(terms)

    def per_target(self, terms: list[float], split: str) -> dict[str, float]:
        """metrics.csv's `<split>_<target>_loss` columns of a multi-target run: each head's own loss, the weight taken
        back out (the split's loss is the weighted sum); nothing for a single target, whose loss is the split's."""
        if len(self.parts) < 2:
            return {}
        return {f"{split}_{target}_loss": term / weight for (target, _, weight, _), term in zip(self.parts, terms)}


def balanced_class_weights(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """n_rows / (n_classes * rows of the class), as scikit-learn's 'balanced'; an absent class gets weight 0."""
    counts = torch.bincount(labels, minlength=n_classes).float()
    weights = len(labels) / (n_classes * counts.clamp(min=1))
    return torch.where(counts > 0, weights, torch.zeros_like(weights))

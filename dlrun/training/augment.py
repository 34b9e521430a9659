"""Training-split-only data augmentation: noise and masking per batch, SMOTE oversampling once before training.

Validation and test rows never pass through here, so their losses and metrics are measured on the data as it is.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from dlrun.config.schema import AugmentConfig
from dlrun.core.errors import ConfigError
from dlrun.data.preprocess import Preprocessor


class BatchAugment:
    """Gaussian noise on the scaled numeric columns, then random feature masking, drawn from its own generator.

    Numeric columns come first in the encoded matrix (see Preprocessor.feature_names_), so noise goes to the first
    `n_numeric` columns and never to one-hot columns, where it would invent half-present categories.
    """

    def __init__(self, cfg: AugmentConfig, n_numeric: int, generator: torch.Generator):
        self.noise_std = cfg.noise_std
        self.mask_prob = cfg.mask_prob
        self.n_numeric = n_numeric
        self.generator = generator

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        """(B, n_features) -> a new (B, n_features) tensor; X itself is left alone (it may be a view of the split)."""
        n_rows, n_numeric = X.shape[0], self.n_numeric
        if self.noise_std > 0 and n_numeric:
            noise = torch.randn((n_rows, n_numeric), generator=self.generator, device=X.device, dtype=X.dtype)
            X = torch.cat((X[:, :n_numeric] + self.noise_std * noise, X[:, n_numeric:]), dim=1)
        if self.mask_prob > 0:
            # Zero is the training mean of a standardised column and "unseen category" for a one-hot column.
            masked = torch.rand(X.shape, generator=self.generator, device=X.device) < self.mask_prob
            X = X.masked_fill(masked, 0.0)
        return X


def batch_augment(cfg: AugmentConfig, n_numeric: int, seed: int, device: torch.device) -> BatchAugment | None:
    """The per-batch augmentation of a run, or None when it would change nothing (the loop then skips it)."""
    if not (cfg.noise_std > 0 and n_numeric) and cfg.mask_prob == 0:
        return None
    return BatchAugment(cfg, n_numeric, torch.Generator(device=device).manual_seed(seed))


def smote_target(tasks: dict[str, str]) -> str:
    """The one classification target SMOTE balances; ConfigError when the run's targets do not allow SMOTE."""
    described = ", ".join(f"{target} ({task})" for target, task in tasks.items())
    if len(tasks) > 1:
        raise ConfigError(
            f"augment.smote works with a single classification target, but this run has {len(tasks)} targets: "
            f"{described}; set data.target to one of them or turn augment.smote off"
        )
    target, task = next(iter(tasks.items()))
    if task != "classification":
        raise ConfigError(
            f"augment.smote needs a classification target, but {target!r} is a {task} target; turn augment.smote off"
        )
    return target


def onehot_blocks(prep: Preprocessor) -> list[slice]:
    """Columns of each categorical feature's one-hot block in the encoded matrix (after the numeric columns)."""
    return prep.onehot_blocks()


def oversample(X: np.ndarray, y: np.ndarray, k: int, seed: int, classes: Sequence[Any] | None = None,
               onehot: Sequence[slice] = ()) -> tuple[np.ndarray, np.ndarray]:
    """SMOTE: synthesise rows of every class but the largest until all classes have as many rows as it.

    X is (n_rows, n_features) float32 and y (n_rows,) int64 class indices; returns the original rows first, then
    the synthetic ones. A synthetic row lies on the segment between a row and one of its `k` nearest neighbours of
    the same class; its `onehot` blocks are snapped to the category of the nearer of the two (all zeros for an
    unseen category), so every row still encodes exactly one category per feature.
    """
    from imblearn.over_sampling import SMOTE  # imported here: it loads scikit-learn, which `dlrun --help` never needs

    counts = np.bincount(y, minlength=len(classes) if classes is not None else 0)
    names = list(classes) if classes is not None else list(range(len(counts)))
    too_small = [(names[c], int(n)) for c, n in enumerate(counts) if 0 < n < min(k + 1, counts.max())]
    if too_small:
        listed = ", ".join(f"{n} row{'s' if n > 1 else ''} of class {name!r}" for name, n in too_small)
        fewest = min(n for _, n in too_small)
        fix = f"set augment.smote_k to at most {fewest - 1}" if fewest > 1 else "add rows of that class"
        raise ConfigError(
            f"augment.smote: SMOTE with augment.smote_k: {k} needs at least {k + 1} training rows of each class it "
            f"oversamples, but the training split has only {listed}; {fix}, or turn augment.smote off"
        )
    # RandomState from a bit generator takes any seed up to 2**63 - 1; RandomState(int) stops at 2**32 - 1.
    smote = SMOTE(k_neighbors=k, random_state=np.random.RandomState(np.random.MT19937(seed)))
    X_out, y_out = smote.fit_resample(X, y)
    synthetic = X_out[len(X):]  # (n_added, n_features), a view: snapped in place
    for block in onehot:
        values = synthetic[:, block]  # (n_added, n_categories): 1 - t at one parent's category, t at the other's
        nearer = values.argmax(axis=1)
        present = values.max(axis=1) >= 0.5  # below 0.5 the nearer parent had an unseen category (all zeros)
        snapped = np.zeros_like(values)
        snapped[np.flatnonzero(present), nearer[present]] = 1.0
        synthetic[:, block] = snapped
    return X_out.astype(np.float32, copy=False), y_out.astype(np.int64, copy=False)

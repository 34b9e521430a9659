"""Which modules hold a layer's weight matrix, for code that walks a model's layers (diagnostics, train.freeze)."""

from __future__ import annotations

import sys

from torch import nn


def linear_layers() -> tuple[type, ...]:
    """nn.Linear, and TabM's ensemble layers once the tabm package is loaded: a TabM model cannot exist before, and
    importing it only to ask would cost every run the second it takes to load (it pulls in scikit-learn)."""
    tabm = sys.modules.get("tabm")
    return (nn.Linear,) if tabm is None else (nn.Linear, tabm.LinearBatchEnsemble, tabm.LinearEnsemble)

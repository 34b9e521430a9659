"""Running a model over a whole split in eval mode, chunked to bound memory."""

from __future__ import annotations

import torch
from torch import nn


# Rows per forward pass when scoring a whole split; bounds memory on large tables.
EVAL_CHUNK_ROWS = 65_536


@torch.inference_mode()
def forward_split(model: nn.Module, X: torch.Tensor) -> dict[str, torch.Tensor]:
    """Model outputs for every row, in eval mode (dropout off), chunked to bound memory."""
    was_training = model.training
    model.eval()
    chunks = [model(X[start : start + EVAL_CHUNK_ROWS]) for start in range(0, max(len(X), 1), EVAL_CHUNK_ROWS)]
    model.train(was_training)
    return {target: torch.cat([chunk[target] for chunk in chunks]) for target in chunks[0]}

"""A split's rows as tensors on the training device."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from dlrun.data.preprocess import Preprocessor


@dataclass
class Split:
    """One split's rows as tensors on the training device."""

    X: torch.Tensor  # (n_rows, n_features) float32
    y: dict[str, torch.Tensor]  # target -> (n_rows,) int64 class index or float32 scaled value

    def __len__(self) -> int:
        return self.X.shape[0]


def to_split(prep: Preprocessor, frame: pd.DataFrame, device: torch.device) -> Split:
    X = torch.from_numpy(prep.transform_features(frame)).to(device)
    y = {target: torch.tensor(values, device=device) for target, values in prep.transform_targets(frame).items()}
    return Split(X, y)

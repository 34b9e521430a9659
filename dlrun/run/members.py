"""Each ensemble member's prediction on the test rows, written beside predictions.csv for the report's member plot.

Only a model with `member_outputs` (model.type: tabm) has members; for any other model nothing is written. Columns:
`<target>_member<i>` (a regression value in the target's own units) or `<target>_member<i>_proba_<class>` (a class
probability), for the first MAX_ROWS test rows in predictions.csv's order: enough rows to show the spread, a bounded
file on a million-row test split.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from torch import nn

from dlrun.core.io import write_csv
from dlrun.data.preprocess import Preprocessor
from dlrun.run import layout

MAX_ROWS = 10_000


def member_frame(prep: Preprocessor, members: dict[str, torch.Tensor]) -> pd.DataFrame:
    """{target: (n_rows, k, n_outputs)} from `member_outputs` -> one column per member (and class)."""
    columns = {}
    for target, out in members.items():
        values = out.double().cpu().numpy()  # (n_rows, k, n_outputs)
        for member in range(values.shape[1]):
            if prep.is_classification(target):
                for index, name in enumerate(prep.classes(target)):
                    columns[f"{target}_member{member}_proba_{name}"] = values[:, member, index]
            else:
                columns[f"{target}_member{member}"] = prep.to_original_units(target, values[:, member, 0])
    return pd.DataFrame(columns)


def write_member_predictions(run_dir: Path, prep: Preprocessor, model: nn.Module, X: torch.Tensor) -> bool:
    """members.csv for a model with ensemble members (True), nothing for one without (False)."""
    if not hasattr(model, "member_outputs"):
        return False
    members = model.member_outputs(X[:MAX_ROWS])
    write_csv(Path(run_dir) / layout.MEMBERS, member_frame(prep, members))
    return True

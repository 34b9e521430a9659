"""What a trained run leaves behind: metrics.json for every split, the test split's confusion tables and
predictions.csv."""

from __future__ import annotations

from pathlib import Path

from dlrun.core.io import write_csv, write_json
from dlrun.data.load import Dataset
from dlrun.data.splits import SPLITS
from dlrun.data.preprocess import Preprocessor
from dlrun.data.tensors import Split
from dlrun.metrics.score import score
from dlrun.model.forward import forward_split
from dlrun.run import layout
from dlrun.run.members import write_member_predictions
from dlrun.run.outputs import confusion_frame, prediction_frame, with_predictions


def write_results(run_dir: Path, dataset: Dataset, prep: Preprocessor, model, splits, score_test: bool = True,
                  n_synthetic: int = 0) -> dict:
    """metrics.json for every split, confusion_<target>.csv and predictions.csv for the test split.

    The training split is scored on its real rows: the `n_synthetic` rows SMOTE appended after them are left out."""
    scored = SPLITS if score_test else [name for name in SPLITS if name != "test"]
    if n_synthetic:
        train = splits["train"]
        n_real = len(train) - n_synthetic
        splits = {**splits, "train": Split(train.X[:n_real], {t: v[:n_real] for t, v in train.y.items()})}
    outputs = {name: forward_split(model, splits[name].X) for name in scored}
    metrics = {name: score(outputs[name], splits[name].y, prep) for name in scored}
    write_json(run_dir / layout.METRICS, metrics)
    if not score_test:
        return metrics
    test = splits["test"]
    for target in prep.targets:
        if prep.is_classification(target):
            write_csv(run_dir / layout.confusion_file(target), confusion_frame(prep, target, outputs["test"][target], test.y[target]))
    rows = dataset.part("test")[dataset.features + dataset.targets]
    write_csv(run_dir / layout.PREDICTIONS, with_predictions(rows, prediction_frame(prep, outputs["test"])))
    write_member_predictions(run_dir, prep, model, test.X)  # a TabM model's members, for the report's spread plot
    return metrics

"""Scoring and serving a fitted model: frames -> tensors -> outputs -> metrics or prediction columns."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import torch

from dlrun.artifacts import FittedRun, now, open_run
from dlrun.data import load_dataset, read_csv
from dlrun.errors import ConfigError
from dlrun.io import write_csv, write_json
from dlrun.metrics import confusion, score
from dlrun.preprocess import Preprocessor
from dlrun.trainer import Split, forward_split


def to_split(prep: Preprocessor, frame: pd.DataFrame, device: torch.device) -> Split:
    X = torch.from_numpy(prep.transform_features(frame)).to(device)
    y = {target: torch.tensor(values, device=device) for target, values in prep.transform_targets(frame).items()}
    return Split(X, y)


def prediction_frame(prep: Preprocessor, outputs: dict[str, torch.Tensor]) -> pd.DataFrame:
    """`<target>_pred` in original units or class names, and `<target>_proba_<class>` per class."""
    columns: dict[str, Any] = {}
    for target, out in outputs.items():
        if prep.targets_[target]["task"] == "classification":
            proba = out.float().softmax(dim=1).cpu().numpy()  # (n_rows, n_classes)
            classes = np.asarray(prep.classes(target), dtype=object)
            columns[f"{target}_pred"] = classes[proba.argmax(axis=1)]
            for k, name in enumerate(prep.classes(target)):
                columns[f"{target}_proba_{name}"] = proba[:, k]
        else:
            columns[f"{target}_pred"] = prep.inverse_regression(target, out.squeeze(1).double().cpu().numpy())
    return pd.DataFrame(columns)


def with_predictions(rows: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """The rows followed by their prediction columns. Names stay unique: a prediction column wins over an input column
    of the same name (a feature called `y_pred` beside the target `y`), which is dropped."""
    kept = rows.drop(columns=[column for column in predictions.columns if column in rows.columns])
    return pd.concat([kept.reset_index(drop=True), predictions.reset_index(drop=True)], axis=1)


def confusion_frame(prep: Preprocessor, target: str, logits: torch.Tensor, y: torch.Tensor) -> pd.DataFrame:
    """Counts with true classes as rows and predicted classes as columns, both named."""
    classes = [str(c) for c in prep.classes(target)]
    counts = confusion(logits, y, len(classes)).cpu().numpy()
    frame = pd.DataFrame(counts, columns=[f"pred_{c}" for c in classes])
    frame.insert(0, "true", classes)
    return frame


@dataclass(frozen=True)
class Evaluation:
    run_dir: Path
    source: str  # "test split" or the CSV scored
    n_rows: int
    metrics: dict[str, dict[str, float]]  # {target: {metric: value}}
    units: dict[str, str]  # regression target -> unit of its errors
    output: Path
    run_status: str | None  # anything but completed (or None) means best.pt is the best of an unfinished run
    checkpoint_epoch: int | None


@dataclass(frozen=True)
class Prediction:
    run_dir: Path
    n_rows: int
    output: Path
    run_status: str | None  # as in Evaluation
    checkpoint_epoch: int | None


@contextmanager
def _writing(output: Path) -> Iterator[None]:
    """A place that cannot hold the output (a directory, a path under a file, no permission) is the user's to change."""
    try:
        yield
    except OSError as exc:
        # FileExistsError comes from creating the parent folders: one of them is a file
        reason = f"{exc.filename} is a file, not a folder" if isinstance(exc, FileExistsError) else exc.strerror or exc
        raise ConfigError(f"cannot write {output} ({reason}); choose another place with --output") from None


def evaluate(run_dir: Path, data: Path | None = None, split: str = "test", output: Path | None = None,
             device: str | None = None) -> Evaluation:
    """Score the best checkpoint on one split of the run's data, or on a labelled CSV; writes eval.json."""
    if split not in ("train", "val", "test"):
        raise ConfigError(f"--split must be train, val or test, got {split!r}")
    run = open_run(run_dir, device)
    if data is not None:
        frame, source = read_csv(data), str(data)
    else:
        dataset = load_dataset(run.cfg.data, run.cfg.seed, tasks=run.prep.tasks)
        frame, source = dataset.part(split), f"{split} split"
    rows = to_split(run.prep, frame, run.device)
    outputs = forward_split(run.model, rows.X)
    metrics = score(outputs, rows.y, run.prep)
    confusions = {
        target: confusion_frame(run.prep, target, outputs[target], rows.y[target]).to_dict(orient="list")
        for target in run.prep.targets if run.prep.targets_[target]["task"] == "classification"
    }
    output = Path(output) if output else Path(run_dir) / "eval.json"
    with _writing(output):
        write_json(output, {"source": source, "n_rows": len(rows), "evaluated_at": now(), "metrics": metrics, "confusion": confusions})
    return Evaluation(Path(run_dir), source, len(rows), metrics, dict(run.cfg.data.units), output, run.run_status,
                      run.checkpoint_epoch)


def predict(run_dir: Path, input_csv: Path, output: Path | None = None, device: str | None = None) -> Prediction:
    """Write the input rows plus prediction columns; extra input columns are kept, column order does not matter."""
    run: FittedRun = open_run(run_dir, device)
    frame = read_csv(input_csv)
    X = torch.from_numpy(run.prep.transform_features(frame)).to(run.device)
    result = with_predictions(frame, prediction_frame(run.prep, forward_split(run.model, X)))
    output = Path(output) if output else Path(input_csv).with_name(f"{Path(input_csv).stem}_predictions.csv")
    with _writing(output):
        write_csv(output, result)
    return Prediction(Path(run_dir), len(result), output, run.run_status, run.checkpoint_epoch)

"""Scoring and serving a fitted model: frames -> tensors -> outputs -> metrics or prediction columns."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from dlrun.run.directory import FittedRun, now, open_run
from dlrun.data.audit import RowCheck, read_new_rows, require_clean
from dlrun.data.load import load_dataset
from dlrun.core.errors import ConfigError
from dlrun.core.io import write_csv, write_json
from dlrun.metrics.score import score
from dlrun.data.tensors import to_split
from dlrun.run.outputs import confusion_frame, prediction_frame, with_predictions
from dlrun.model.forward import forward_split


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
    rows_check: RowCheck | None = None  # with --data: unseen categories, missing values, out-of-range numbers


@dataclass(frozen=True)
class Prediction:
    run_dir: Path
    n_rows: int
    output: Path
    run_status: str | None  # as in Evaluation
    checkpoint_epoch: int | None
    rows_check: RowCheck | None = None  # unseen categories, tokens read as missing, missing values, out-of-range numbers


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
             device: str | None = None, strict: bool = False) -> Evaluation:
    """Score the best checkpoint on one split of the run's data, or on a labelled CSV; writes eval.json."""
    if split not in ("train", "val", "test"):
        raise ConfigError(f"--split must be train, val or test, got {split!r}")
    run = open_run(run_dir, device)
    rows_check = None
    if data is not None:
        _, frame, rows_check = read_new_rows(run.prep, data)
        source = str(data)
        if strict:
            require_clean(rows_check, source)
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
                      run.checkpoint_epoch, rows_check)


def predict(run_dir: Path, input_csv: Path, output: Path | None = None, device: str | None = None,
            strict: bool = False) -> Prediction:
    """Write the input rows exactly as given plus prediction columns; extra input columns are kept, column order does
    not matter. With `strict`, rows holding anything the model was not trained on are an error naming them."""
    run: FittedRun = open_run(run_dir, device)
    as_written, frame, rows_check = read_new_rows(run.prep, input_csv)
    if strict:
        require_clean(rows_check, str(input_csv))
    X = torch.from_numpy(run.prep.transform_features(frame)).to(run.device)
    result = with_predictions(as_written, prediction_frame(run.prep, forward_split(run.model, X)))
    output = Path(output) if output else Path(input_csv).with_name(f"{Path(input_csv).stem}_predictions.csv")
    with _writing(output):
        write_csv(output, result)
    return Prediction(Path(run_dir), len(result), output, run.run_status, run.checkpoint_epoch, rows_check)

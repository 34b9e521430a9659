"""Scoring and serving a fitted model: frames -> tensors -> outputs -> metrics or prediction columns."""

from __future__ import annotations

import itertools
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd
import torch

from dlrun.run import layout
from dlrun.run.directory import now
from dlrun.folds.predictor import Predictor, open_predictor
from dlrun.data.audit import RowCheck, check_rows, new_row_chunks, require_clean
from dlrun.data.load import load_dataset
from dlrun.data.sources import default_prediction_path
from dlrun.data.stream import StreamedTable
from dlrun.core.errors import ConfigError
from dlrun.core.heap import keep_large_blocks_off_the_heap
from dlrun.core.io import NO_SPACE, path_to_replace, write_atomic, write_json
from dlrun.metrics.score import score
from dlrun.run.outputs import confusion_frame, prediction_frame, with_predictions
from dlrun.model.forward import EVAL_CHUNK_ROWS

# Rows read, scored and written at a time by predict and eval --data: memory stays flat however long the CSV.
# A multiple of forward_split's chunk, so every row meets the model in the same batch as in one whole pass.
CHUNK_ROWS = EVAL_CHUNK_ROWS


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
        if exc.errno in NO_SPACE:
            raise  # the disk, not the place, must change: cli/exits.py says so for every command alike
        # FileExistsError comes from creating the parent folders: one of them is a file
        reason = f"{exc.filename} is a file, not a folder" if isinstance(exc, FileExistsError) else exc.strerror or exc
        raise ConfigError(f"cannot write {output} ({reason}); choose another place with --output") from None


def evaluate(run_dir: Path, data: Path | None = None, split: str = "test", output: Path | None = None,
             device: str | None = None, strict: bool = False) -> Evaluation:
    """Score the best checkpoint on one split of the run's data, or on a labelled CSV; writes eval.json.

    A CSV is read, checked and scored CHUNK_ROWS rows at a time; with `strict`, rows holding anything the model was
    not trained on are an error naming them, and nothing is written."""
    if split not in ("train", "val", "test"):
        raise ConfigError(f"--split must be train, val or test, got {split!r}")
    run = open_predictor(run_dir, device)
    if run.is_ensemble and data is None and split != "test":
        raise ConfigError(f"--split {split}: every row outside the test split trained some of this ensemble's fold "
                          "models, so only --split test (or --data) scores it on rows it never saw")
    output = Path(output) if output else Path(run_dir) / layout.EVALUATION
    with _writing(output):
        target_file = path_to_replace(output)
    rows_check = None
    if data is not None:
        checks: list[RowCheck] = []
        chunks = _kept(new_row_chunks(run.prep, data, CHUNK_ROWS, with_text=False), checks)
        frames, source = (frame for _, frame, _ in chunks), str(data)
    elif run.cfg.data.in_memory is False:  # a streamed run: its split read chunk by chunk, as training read it
        frames, source = StreamedTable(run.cfg.data, run.cfg.seed, run.prep.columns).split_frames(split), f"{split} split"
    else:
        dataset = load_dataset(run.cfg.data, run.cfg.seed, tasks=run.prep.tasks)
        frames, source = [dataset.part(split)], f"{split} split"
    outputs, y = _scored(run, frames)
    if data is not None:
        rows_check = RowCheck.combined(checks)
        if strict:
            require_clean(rows_check, source)
    metrics = score(outputs, y, run.prep)
    confusions = {
        target: confusion_frame(run.prep, target, outputs[target], y[target]).to_dict(orient="list")
        for target in run.prep.targets if run.prep.is_classification(target)
    }
    n_rows = len(next(iter(y.values())))
    with _writing(output):
        write_json(target_file, {"source": source, "n_rows": n_rows, "evaluated_at": now(), "metrics": metrics, "confusion": confusions})
    return Evaluation(Path(run_dir), source, n_rows, metrics, dict(run.cfg.data.units), output, run.run_status,
                      run.checkpoint_epoch, rows_check)


def _scored(run: Predictor, frames: Iterable[pd.DataFrame]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Model outputs and encoded targets of every row, chunk by chunk: only these small tensors are kept, not the rows."""
    outputs, targets = [], []
    for frame in frames:
        outputs.append(run.outputs(frame))
        targets.append({t: torch.tensor(v, device=run.device) for t, v in run.prep.transform_targets(frame).items()})
    joined = lambda parts: {name: torch.cat([part[name] for part in parts]) for name in parts[0]}  # noqa: E731
    return joined(outputs), joined(targets)


def predict(run_dir: Path, input_csv: Path, output: Path | None = None, device: str | None = None,
            strict: bool = False) -> Prediction:
    """Write the input rows exactly as given plus prediction columns, CHUNK_ROWS rows at a time; extra input columns
    are kept, column order does not matter. With `strict`, rows holding anything the model was not trained on are an
    error naming them (checked in a first pass over the file, so nothing is written)."""
    run = open_predictor(run_dir, device)
    keep_large_blocks_off_the_heap()  # chunk after chunk, memory must not creep up (core/heap.py)
    if strict:
        require_clean(RowCheck.combined([check for _, _, check in new_row_chunks(run.prep, input_csv, CHUNK_ROWS, with_text=False)]),
                      str(input_csv))
    output = Path(output) if output else default_prediction_path(input_csv)
    checks: list[RowCheck] = []
    # The first chunk is scored before the output is touched: a bad CSV or column leaves no file behind.
    results = (with_predictions(as_written, _prediction_chunk(run, frame))
               for as_written, frame, _ in _kept(new_row_chunks(run.prep, input_csv, CHUNK_ROWS), checks))
    first = next(results)
    n_rows = 0

    def write(fh) -> None:
        nonlocal n_rows
        for result in itertools.chain([first], results):
            result.to_csv(fh, header=n_rows == 0, index=False)
            n_rows += len(result)

    with _writing(output):
        write_atomic(path_to_replace(output), write)
    return Prediction(Path(run_dir), n_rows, output, run.run_status, run.checkpoint_epoch, RowCheck.combined(checks))


def _kept(chunks: Iterable[tuple[Any, Any, RowCheck]], checks: list[RowCheck]) -> Iterator[tuple[Any, Any, RowCheck]]:
    """The chunks as they come, keeping each one's findings in `checks`."""
    for chunk in chunks:
        checks.append(chunk[2])
        yield chunk


def predict_rows(run: Predictor, rows: pd.DataFrame) -> tuple[pd.DataFrame, RowCheck]:
    """Prediction columns for rows already in memory (a request to `dlrun serve`), read and checked as predict reads
    a CSV's rows: a cell a column's role cannot read is a DataError naming the row (from 1) and column."""
    cleaned, check = check_rows(run.prep, rows)
    return _prediction_chunk(run, cleaned), check


def _prediction_chunk(run: Predictor, frame: pd.DataFrame) -> pd.DataFrame:
    """Prediction columns for one chunk of input rows."""
    return prediction_frame(run.prep, run.outputs(frame))

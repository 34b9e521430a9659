"""run.json, the run record: one typed model that every writer and reader goes through.

Every field is optional: a run written by an older dlrun (or one killed early) lacks some, and is still read.
Unknown keys are kept as they are, so rewriting a record never loses what a newer dlrun wrote. Standard library and
pydantic only: `dlrun runs` reads a hundred of these without importing torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from dlrun.core.errors import RunError
from dlrun.core.io import overwrite_in_place, read_json, write_json
from dlrun.run import layout


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class TrainStep(_Part):
    path: Literal["fast", "general"]
    reason: str | None = None  # why the general (autograd) step was used


class Resumption(_Part):
    at: str  # ISO time, UTC
    after_epoch: int  # the epoch last.pt held when the run resumed (0: it restarted from the first epoch)


class Tracked(_Part):
    mlflow_run_id: str | None = None  # the MLflow run this run logs to; a resumed run continues it
    tensorboard: str | None = None  # the event files' folder, relative to the run directory


class CvPlan(_Part):
    """A cross-validation or ensemble directory's plan: its fold runs live under folds/ (dlrun/folds/)."""

    folds: int
    repeats: int = 1
    ensemble: bool = False  # the fold models are served together as one predictor
    score_test: bool = True  # False for a sweep's cross-validated trial: test is scored for the final pick only
    members: list[str] = []  # the fold runs, relative to the directory, once every one has completed


class RunRecord(_Part):
    """What run.json holds. The status comes first and is written before anything else the run writes."""

    # "interrupted": stopped by Ctrl-C or SIGTERM, resumable (older runs say "failed" with error "interrupted")
    status: Literal["running", "completed", "failed", "interrupted"] | None = None
    error: str | None = None  # why a failed run failed; for an interrupted one, which signal and when
    started: str | None = None  # ISO times, UTC
    ended: str | None = None
    name: str | None = None
    data_source: str | None = None  # the built-in data set's name or the CSV's path
    seed: int | None = None
    device: str | None = None
    versions: dict[str, str | None] | None = None  # python, dlrun, torch, ... as installed
    git_commit: str | None = None
    data: dict[str, Any] | None = None  # the data summary: rows per split, features, targets (see runner.summarise)
    notes: list[str] = []  # what fine-tuning loaded, re-initialised or froze
    score_test: bool = True  # False for a sweep's trials: the test split is scored for the final pick only
    seconds: dict[str, float] = {}  # wall time per stage
    threads: int | None = None
    world_size: int | None = None  # processes training the model together (torchrun); 1 alone; None: an older run
    train_step: TrainStep | None = None
    resumed: list[Resumption] = []
    epochs_run: int | None = None
    best_epoch: int | None = None
    monitor: str | None = None
    best_value: float | None = None  # null when the metric was undefined (NaN)
    stop_reason: str | None = None
    warnings: list[str] = []  # training-health warnings, plots or report that failed
    overfitting: dict[str, Any] | None = None  # {"epoch": where validation loss began rising, "message": ...}
    sweep: dict[str, Any] | None = None  # the sweep, trial and parameters a trial's run belongs to
    tracking: Tracked | None = None  # where the run is tracked live (config's tracking section); older runs lack it
    cv: CvPlan | None = None  # set on a `dlrun cv` directory or an ensemble (train.ensemble); its folds are runs

    def updated(self, **changes: Any) -> "RunRecord":
        """A copy with `changes` applied and checked (a record is never edited in place)."""
        return RunRecord.model_validate({**self.as_json(), **changes})

    def as_json(self) -> dict[str, Any]:
        """The keys this record was given, as plain JSON values."""
        return self.model_dump(mode="json", exclude_unset=True)

    @property
    def status_text(self) -> str | None:
        """The status with the reason a failed run gives: "failed: interrupted"; None when no status is recorded."""
        if self.status is None:
            return None
        return f"{self.status}: {self.error}" if self.status == "failed" and self.error else self.status

    def tasks(self) -> dict[str, str | None]:
        """{target: "classification" | "regression"} from the data summary; {} when the record has none."""
        targets = (self.data or {}).get("targets")
        if not isinstance(targets, dict):
            return {}
        return {str(t): info.get("task") if isinstance(info, dict) else None for t, info in targets.items()}


def read_record(run_dir: Path | str) -> RunRecord:
    """run.json as a RunRecord (an empty one when there is none); a damaged file is a RunError naming it."""
    path = Path(run_dir) / layout.RECORD
    try:
        raw = read_json(path)
    except FileNotFoundError:
        return RunRecord()
    except (OSError, ValueError) as exc:  # JSONDecodeError, UnicodeDecodeError and too deep nesting are ValueErrors
        raise RunError(f"{path} is damaged ({exc})") from None
    if not isinstance(raw, dict):
        raise RunError(f"{path} is damaged: it holds a {type(raw).__name__}, not an object of run facts")
    try:
        return RunRecord.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise RunError(f"{path} is damaged: {where}: {first['msg']} (got {first.get('input')!r:.60})") from None


def write_record(run_dir: Path | str, record: RunRecord) -> None:
    write_json(Path(run_dir) / layout.RECORD, record.as_json())


def write_status(run_dir: Path | str, record: RunRecord) -> None:
    """Write the record; when the disk cannot take the whole of it, at least its status, error and times (a few
    hundred bytes), else those written over the old run.json's own blocks (a full disk has no room for a temp file),
    so the run never stays `running` when it is not. Raises only when none of that can be written."""
    try:
        write_record(run_dir, record)
    except OSError:
        small = {key: value for key, value in record.as_json().items() if key in ("status", "error", "started", "ended", "name")}
        try:
            write_record(run_dir, RunRecord.model_validate(small))
        except OSError:
            if not overwrite_in_place(Path(run_dir) / layout.RECORD, json.dumps(small)):
                raise
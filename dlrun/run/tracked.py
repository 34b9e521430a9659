"""The run's side of live tracking (training/tracking.py holds the trackers): run.json's note of where the run is
tracked, and which of the run's files the tracker receives when it ends."""

from __future__ import annotations

from pathlib import Path

from dlrun.config.schema import Config
from dlrun.run import layout
from dlrun.run.record import RunRecord
from dlrun.training.tracking import Tracking

# What an MLflow run receives at the end, those that exist (report.html and plots/ only with `report: true`).
ARTEFACTS = (layout.CONFIG, layout.HISTORY, layout.METRICS, layout.REPORT, layout.PLOTS)


def start_tracking(cfg: Config, run_dir: Path, record: RunRecord) -> tuple[Tracking | None, RunRecord]:
    """The tracking callback, its trackers started (a resumed run's MLflow run reopened), and the record noting them;
    (None, record) when the config tracks nothing. Never raises: a tracker that fails to start is a warning."""
    if not cfg.tracking.tensorboard and cfg.tracking.mlflow is None:
        return None, record
    previous = record.tracking.mlflow_run_id if record.tracking is not None else None
    tracking = Tracking(cfg, run_dir, run_dir / layout.TENSORBOARD, previous)
    run_id = tracking.open() or previous  # a store down at resume keeps the run's id for the next try
    tensorboard = layout.TENSORBOARD if cfg.tracking.tensorboard else None
    return tracking, record.updated(tracking={"mlflow_run_id": run_id, "tensorboard": tensorboard})


def finish_tracking(tracking: Tracking | None, run_dir: Path, status: str,
                    metrics: dict[str, dict[str, dict[str, float]]] | None = None, last_epoch: int = 0) -> list[str]:
    """End the trackers' runs with `status` (completed | interrupted | failed; a completed one also sends its final
    metrics and files); returns the warnings of trackers that failed at any point. Never raises."""
    if tracking is None:
        return []
    tracking.close(status, metrics, [Path(run_dir) / name for name in ARTEFACTS], last_epoch)
    return tracking.warnings

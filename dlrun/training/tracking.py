"""Live tracking: a callback that mirrors every metrics.csv row to TensorBoard and MLflow while the run trains.

A tracker is a window on the run, never part of it: each call to one is guarded, and its first failure (a store that
cannot be reached, a full disk) becomes one warning for run.json and switches that tracker off; training goes on.
tensorboard and mlflow are imported here only, and only once a config turns them on (`dlrun --help` stays instant).

Resuming never logs an epoch twice: TensorBoard's new event file purges the old files' epochs (purge_step) and the
whole history is written again; MLflow, whose metrics cannot be deleted, is sent only the epochs its run lacks.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Callable

from dlrun.config.schema import Config
from dlrun.metrics.names import flatten
from dlrun.training.state import Callback, TrainState

MLFLOW_STATUS = {"completed": "FINISHED", "interrupted": "KILLED", "failed": "FAILED"}
FINAL = "final/"  # the best epoch's metrics per split (metrics.json), apart from the per-epoch scalars
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value
MAX_KEY_CHARS = 250  # and on a param or metric name
PARAMS_PER_BATCH = 100  # MLflow's limit per log_batch call


class Tracking(Callback):
    """Sends the config once, each epoch's row (step = epoch) as it ends, and the final metrics and files at `close`.

    `open` starts the trackers before training and returns the MLflow run id for run.json; `mlflow_run_id` (from a
    resumed run's run.json) reopens that MLflow run instead of starting a new one. Place it after Checkpoints: an
    epoch is then tracked only once last.pt holds it, and a resumed run sends whatever the kill cut off.
    """

    def __init__(self, cfg: Config, run_dir: Path, log_dir: Path, mlflow_run_id: str | None = None):
        params = flat_params(cfg.model_dump(mode="json", exclude={"tracking"}))  # a store URI may hold a password
        self.backends: list[Any] = []
        if cfg.tracking.tensorboard:
            self.backends.append(TensorBoardTracker(Path(log_dir), params))
        if cfg.tracking.mlflow is not None:
            settings = cfg.tracking.mlflow
            self.backends.append(MlflowTracker(settings.uri, settings.experiment, Path(run_dir), params, mlflow_run_id))
        self.warnings: list[str] = []  # one per tracker that failed, for run.json

    def open(self) -> str | None:
        """Start or reopen each tracker; returns the MLflow run's id (None when MLflow is off or failed)."""
        for backend in list(self.backends):
            self._guarded(backend, "start", backend.open)
        return next((b.run_id for b in self.backends if isinstance(b, MlflowTracker)), None)

    def on_train_begin(self, state: TrainState) -> None:
        for backend in list(self.backends):
            self._guarded(backend, "start", lambda: backend.begin(state.history))

    def on_epoch_end(self, state: TrainState, row: dict[str, float]) -> None:
        for backend in list(self.backends):
            self._guarded(backend, f"epoch {state.epoch}", lambda: backend.log(row))

    def close(self, status: str, metrics: dict[str, dict[str, dict[str, float]]] | None, files: list[Path],
              last_epoch: int) -> None:
        """End each tracker's run with `status` (completed | interrupted | failed); a completed run also sends its
        final metrics ({split: {target: {metric: value}}}) and `files` (those that exist; a folder goes whole)."""
        final = {f"{FINAL}{name}": value for split, scores in (metrics or {}).items()
                 for name, value in flatten(scores, split).items()}
        for backend in list(self.backends):
            self._guarded(backend, "the end", lambda: backend.close(status, final, [f for f in files if f.exists()], last_epoch))
        self.backends = []

    def _guarded(self, backend: Any, moment: str, call: Callable[[], Any]) -> None:
        try:
            call()
        except Exception as exc:  # any failure of a tracker, its store or its disk: never the run's
            message = " ".join(str(exc).split())[:300] or type(exc).__name__
            if isinstance(exc, ImportError):
                message = f"{exc.name or message} is not installed: pip install 'dlrun[track]'"
            self.warnings.append(f"{backend.name} tracking stopped at {moment} ({type(exc).__name__}: {message}); "
                                 "the run went on without it")
            self.backends.remove(backend)
            backend.abandon()


class TensorBoardTracker:
    """Event files in `log_dir`: a scalar per metrics.csv column and epoch, then the config as hparams."""

    name = "TensorBoard"

    def __init__(self, log_dir: Path, params: dict[str, str | int | float | bool]):
        self.log_dir, self.params = log_dir, params
        self.writer = None

    def open(self) -> None:
        pass  # the writer opens in `begin`, so a run that fails its checks leaves no event file

    def begin(self, history: list[dict[str, float]]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        resumed = self.log_dir.is_dir() and any(self.log_dir.glob("events.out.tfevents.*"))
        # A resumed run's file says "forget every step from 1": the history, written again below, replaces the old
        # files' epochs, including one cut off by the kill. TensorBoard reads the files in the order they were made.
        self.writer = SummaryWriter(str(self.log_dir), purge_step=1 if resumed else None)
        for row in history if resumed else ():
            self.log(row, flush=False)
        self.writer.flush()

    def log(self, row: dict[str, float], flush: bool = True) -> None:
        for key, value in row.items():
            if key != "epoch":
                self.writer.add_scalar(key, value, row["epoch"])
        if flush:  # shown live, and kept when the process is killed
            self.writer.flush()

    def close(self, status: str, final: dict[str, float], files: list[Path], last_epoch: int) -> None:
        if self.writer is None:  # the run failed before training began: no event file was started
            return
        if status == "completed" and final:
            from torch.utils.tensorboard.summary import hparams

            # In this run's own folder (SummaryWriter.add_hparams would start a new one): a run is one row in the
            # HPARAMS tab, its metric columns read from the final/ scalars.
            for summary in hparams(self.params, final):
                self.writer.file_writer.add_summary(summary, last_epoch)
            for tag, value in final.items():
                self.writer.add_scalar(tag, value, last_epoch)
        self.writer.close()
        self.writer = None

    def abandon(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception:  # the disk that failed the writer may fail its close too
                pass
            self.writer = None


class MlflowTracker:
    """One MLflow run per dlrun run, in `experiment` of the store at `uri`; reopened when the run resumes."""

    name = "MLflow"

    def __init__(self, uri: str, experiment: str, run_dir: Path, params: dict[str, str | int | float | bool],
                 run_id: str | None):
        self.uri, self.experiment, self.run_dir, self.params, self.run_id = uri, experiment, run_dir, params, run_id
        self.client = None
        self.logged_steps: set[int] = set()  # epochs the MLflow run already holds
        self.logged_params: set[str] = set()

    def open(self) -> None:
        # MLflow retries an unreachable server for minutes by default; a tracker may cost seconds, not the run.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        from mlflow.tracking import MlflowClient

        for logger in ("mlflow", "alembic"):  # "Creating initial MLflow database tables..." is not the user's news
            logging.getLogger(logger).setLevel(logging.WARNING)  # after the import, which sets mlflow's to INFO

        self.client = MlflowClient(tracking_uri=self.uri)
        if self.run_id is not None:
            run = self.client.get_run(self.run_id)
            self.client.update_run(self.run_id, status="RUNNING")
            self.logged_params = set(run.data.params)
            self.logged_steps = {m.step for m in self.client.get_metric_history(self.run_id, "train_loss")}
            return
        found = self.client.get_experiment_by_name(self.experiment)
        experiment_id = found.experiment_id if found is not None else self._create_experiment()
        run = self.client.create_run(experiment_id, run_name=self.run_dir.name, tags={"dlrun.run_dir": str(self.run_dir.resolve())})
        self.run_id = run.info.run_id

    def _create_experiment(self) -> str:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.create_experiment(self.experiment, artifact_location=artefact_folder(self.uri))
        except MlflowException:  # a sweep's other worker created it a moment ago
            found = self.client.get_experiment_by_name(self.experiment)
            if found is None:
                raise
            return found.experiment_id

    def begin(self, history: list[dict[str, float]]) -> None:
        from mlflow.entities import Param

        # Params are set once: a resumed run keeps the values it started with (MLflow refuses a change).
        params = [Param(mlflow_key(key), str(value)[:MAX_PARAM_CHARS]) for key, value in self.params.items()
                  if mlflow_key(key) not in self.logged_params]
        for start in range(0, len(params), PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=params[start : start + PARAMS_PER_BATCH])
        self.logged_params |= {param.key for param in params}
        for row in history:  # epochs that last.pt holds but the kill kept from MLflow
            self.log(row)

    def log(self, row: dict[str, float]) -> None:
        epoch = int(row["epoch"])
        if epoch in self.logged_steps:
            return
        self._send({key: value for key, value in row.items() if key != "epoch"}, epoch)
        self.logged_steps.add(epoch)

    def close(self, status: str, final: dict[str, float], files: list[Path], last_epoch: int) -> None:
        if status == "completed":
            self._send(final, last_epoch)
            for path in files:
                if path.is_dir():
                    self.client.log_artifacts(self.run_id, str(path), artifact_path=path.name)
                else:
                    self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, MLFLOW_STATUS.get(status, "FAILED"))

    def _send(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(mlflow_key(key), float(value), now, step) for key, value in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def abandon(self) -> None:
        pass  # the MLflow run stays as the store last heard of it


def artefact_folder(uri: str) -> str | None:
    """Where a new experiment's files go: for a SQLite store, `mlartifacts/` beside the database file (MLflow's own
    default is ./mlruns in whatever folder the run was started from); other stores decide for themselves (None)."""
    if not uri.lower().startswith("sqlite:///"):
        return None
    database = Path(uri[len("sqlite:///"):])  # sqlite:////abs/x.db -> /abs/x.db; sqlite:///x.db -> x.db (relative)
    return (database.resolve().parent / "mlartifacts").as_uri()


def flat_params(config: dict[str, Any], prefix: str = "") -> dict[str, str | int | float | bool]:
    """{"model.hidden": "[16, 8]", "optimizer.lr": 0.01, ...}: the config's leaves under dotted keys; lists and
    nulls as JSON text, which TensorBoard's hparams and MLflow's params both take."""
    flat: dict[str, str | int | float | bool] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flat_params(value, f"{name}."))
        else:
            flat[name] = value if isinstance(value, (str, int, float, bool)) else json.dumps(value)
    return flat


def mlflow_key(name: str) -> str:
    """A metric or param name MLflow accepts: letters, digits, _ - . / and spaces, and no path tricks such as `..`
    or `//` (a target's name is user text)."""
    cleaned = re.sub(r"\.{2,}", "_", re.sub(r"[^\w.\-/ ]", "_", name))
    return "/".join(part for part in cleaned.split("/") if part not in ("", "."))[:MAX_KEY_CHARS]

"""Live tracking (config `tracking`): TensorBoard event files and an MLflow store, read back as a user's tools would.

The end-to-end runs are real `python -m dlrun train` processes; their trackers are read back with TensorBoard's
EventAccumulator and MLflow's client. They start side by side (each spends seconds importing torch and mlflow).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
import yaml

from dlrun.config.load import validate_config
from dlrun.core.errors import ConfigError
from dlrun.training.state import TrainState
from dlrun.training.tracking import Tracking, flat_params, mlflow_key

from conftest import FAST, REPO, InterruptAfter, merge

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")

DATA = {"dataset": "synthetic", "synthetic": {"n_samples": 200}}


# ---- the config section ---------------------------------------------------------------------------------------------
def test_tracking_is_off_unless_asked_for():
    tracking = validate_config({"data": DATA}).tracking
    assert tracking.tensorboard is False and tracking.mlflow is None


@pytest.mark.parametrize("uri, expected", [
    ("ftp://host/x", "ftp: is not a tracking store MLflow knows"),
    ("sqlite://", "a SQLite store is sqlite:///"),
    ("sqlite:/rel.db", "a SQLite store is sqlite:///"),
    ("http://", "needs a host"),
    ("my store", "without spaces"),
    ("", "without spaces"),
    ("./mlruns", "a folder (MLflow's file store)"),
    ("file:///tmp/mlruns", "a folder (MLflow's file store)"),
])
def test_a_malformed_mlflow_uri_is_refused_naming_the_key(uri, expected):
    with pytest.raises(ConfigError, match="tracking.mlflow.uri") as caught:
        validate_config({"data": DATA, "tracking": {"mlflow": {"uri": uri}}})
    assert expected in str(caught.value)


@pytest.mark.parametrize("uri", ["sqlite:///mlflow.db", "sqlite:////tmp/x/mlflow.db", "http://localhost:5000",
                                 "postgresql+psycopg://u@db/mlflow"])
def test_the_stores_mlflow_knows_are_accepted(uri):
    assert validate_config({"data": DATA, "tracking": {"mlflow": {"uri": uri}}}).tracking.mlflow.uri == uri


def test_the_readme_tracking_example_is_a_valid_config():
    readme = (REPO / "README.md").read_text()
    example = readme.split("## Watching a run live", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    tracking = validate_config({"data": DATA, **yaml.safe_load(example)}).tracking
    assert tracking.tensorboard and tracking.mlflow.uri == "sqlite:///mlflow.db"


@pytest.mark.parametrize("experiment", ["", "   ", "a\nb", "x" * 201])
def test_an_unusable_experiment_name_is_refused(experiment):
    with pytest.raises(ConfigError, match="tracking.mlflow.experiment"):
        validate_config({"data": DATA, "tracking": {"mlflow": {"uri": "sqlite:///m.db", "experiment": experiment}}})


def test_mlflow_keys_keep_names_and_drop_path_tricks():
    assert mlflow_key("val_price_rmse") == "val_price_rmse"
    assert mlflow_key("final/test_a (b)_mae") == "final/test_a _b__mae"
    assert mlflow_key("val_../../x") == "val__/_/x" and mlflow_key("/a//b/./c") == "a/b/c"


def test_params_are_the_config_leaves_under_dotted_keys():
    cfg = validate_config(merge(FAST, {"data": DATA, "tracking": {"tensorboard": True}}))
    params = flat_params(cfg.model_dump(mode="json", exclude={"tracking"}))
    assert params["optimizer.lr"] == 0.01 and params["model.hidden"] == "[16, 8]"
    assert params["train.early_stopping.patience"] == 20 and params["train.grad_clip"] == "null"


# ---- failures stay warnings -----------------------------------------------------------------------------------------
class _Recorder:
    name = "Recorder"

    def __init__(self, fail_at: int | None = None):
        self.fail_at, self.epochs, self.abandoned = fail_at, [], False

    def begin(self, history):
        pass

    def log(self, row):
        if row["epoch"] == self.fail_at:
            raise OSError(28, "No space left on device")
        self.epochs.append(row["epoch"])

    def close(self, status, final, files, last_epoch):
        self.closed = status

    def abandon(self):
        self.abandoned = True


def test_a_failing_tracker_becomes_one_warning_and_the_others_go_on():
    tracking = Tracking(validate_config({"data": DATA}), Path("run"), Path("run/tensorboard"))
    broken, healthy = _Recorder(fail_at=2), _Recorder()
    tracking.backends = [broken, healthy]
    state = TrainState(model=None, optimizer=None, monitor="val_loss", maximise=False)
    tracking.on_train_begin(state)
    for epoch in (1, 2, 3):
        state.epoch = epoch
        tracking.on_epoch_end(state, {"epoch": epoch, "train_loss": 1.0})
    tracking.close("completed", {}, [], 3)
    assert broken.epochs == [1] and broken.abandoned and not hasattr(broken, "closed")
    assert healthy.epochs == [1, 2, 3] and healthy.closed == "completed"
    assert tracking.warnings == ["Recorder tracking stopped at epoch 2 (OSError: [Errno 28] No space left on device); "
                                 "the run went on without it"]


def test_importing_the_cli_and_the_runner_imports_no_tracker():
    code = ("import dlrun.cli.commands, dlrun.run.runner, sys; "
            "assert not {'tensorboard', 'mlflow'} & set(sys.modules), sorted({'tensorboard', 'mlflow'} & set(sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr


# ---- real runs, read back -------------------------------------------------------------------------------------------
def _dlrun(args: list[str], cwd: Path, kill_at: str | None = None) -> subprocess.CompletedProcess:
    """`python -m dlrun ARGS` in `cwd` (where MLflow puts a sqlite store's artefacts), killed at `kill_at` if given."""
    env = {**os.environ, "COLUMNS": "200", **({"DLRUN_TEST_KILL_AT": kill_at} if kill_at else {})}
    return subprocess.run([sys.executable, "-m", "dlrun", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One SQLite store for the module, its tables made here: creating a store costs seconds, and processes creating
    one at the same moment race in MLflow's migrations. Each test logs to an experiment of its own."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    _client(uri).search_experiments()
    return uri


@pytest.fixture(scope="module")
def tracked_runs(tmp_path_factory, store) -> dict:
    """Three runs trained side by side: "both" (TensorBoard and MLflow), "killed" (SIGKILL right
    after epoch 2's last.pt, before its tracking; then resumed) and "unreachable" (an MLflow store under a
    file, TensorBoard on)."""
    root = tmp_path_factory.mktemp("tracked")
    specs = {
        "both": ({"train": {"epochs": 3},
                  "tracking": {"tensorboard": True, "mlflow": {"uri": store, "experiment": "both"}}}, None),
        "killed": ({"train": {"epochs": 4, "early_stopping": None},
                    "tracking": {"tensorboard": True, "mlflow": {"uri": store, "experiment": "killed"}}},
                   "last.pt:after:2"),
        # a "folder" that is a file: the store can be neither opened nor created
        "unreachable": ({"train": {"epochs": 2}, "tracking": {
            "tensorboard": True, "mlflow": {"uri": f"sqlite:///{root / 'both.yaml' / 'mlflow.db'}"}}}, None),
    }
    configs = {}
    for name, (extra, _) in specs.items():
        configs[name] = root / f"{name}.yaml"
        configs[name].write_text(yaml.safe_dump(merge(FAST, {"data": DATA, "name": name, **extra})))
    with ThreadPoolExecutor(max_workers=len(specs)) as pool:
        futures = {name: pool.submit(_dlrun, ["train", str(configs[name]), "--runs-dir", str(root / name)], root, kill_at)
                   for name, (_, kill_at) in specs.items()}
        results = {name: future.result() for name, future in futures.items()}
    run_dirs = {name: next((root / name).iterdir()) for name in specs}
    killed = results["killed"]
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    killed_record = json.loads((run_dirs["killed"] / "run.json").read_text())
    results["resumed"] = _dlrun(["train", "--resume", str(run_dirs["killed"])], root)
    return {"root": root, "results": results, "run_dirs": run_dirs, "killed_record": killed_record}


def _events(run_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return events


def _client(store: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=store)


@pytest.mark.slow
def test_tensorboard_gets_every_metrics_csv_column_per_epoch_and_the_config_as_hparams(tracked_runs):
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    result, run_dir = tracked_runs["results"]["both"], tracked_runs["run_dirs"]["both"]
    assert result.returncode == 0, result.stderr
    history = pd.read_csv(run_dir / "metrics.csv")
    events = _events(run_dir)
    for column in history.columns.drop("epoch"):  # losses, validation metrics, lr, seconds
        scalars = events.Scalars(column)
        assert [s.step for s in scalars] == [1, 2, 3], column
        assert [s.value for s in scalars] == pytest.approx(history[column].tolist(), rel=1e-6), column
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert events.Scalars("final/test_label_accuracy")[-1].value == pytest.approx(metrics["test"]["label"]["accuracy"])
    plugin = events.PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(plugin["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["optimizer.lr"].number_value == pytest.approx(0.01)
    assert start.hparams["model.hidden"].string_value == "[16, 8]"
    experiment = HParamsPluginData.FromString(plugin["_hparams_/experiment"]).experiment
    assert "final/test_salary_rmse" in {info.name.tag for info in experiment.metric_infos}
    assert json.loads((run_dir / "run.json").read_text())["tracking"]["tensorboard"] == "tensorboard"


@pytest.mark.slow
def test_mlflow_gets_params_metrics_per_epoch_and_the_run_files(tracked_runs, store):
    run_dir = tracked_runs["run_dirs"]["both"]
    client = _client(store)
    run_id = json.loads((run_dir / "run.json").read_text())["tracking"]["mlflow_run_id"]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == run_dir.name
    assert client.get_experiment(run.info.experiment_id).name == "both"
    assert run.data.params["optimizer.lr"] == "0.01" and run.data.params["data.dataset"] == "synthetic"
    assert not any(key.startswith("tracking.") for key in run.data.params)  # the store's URI may hold a password
    history = pd.read_csv(run_dir / "metrics.csv")
    for column in ("train_loss", "val_loss", "val_salary_rmse", "lr"):
        logged = client.get_metric_history(run_id, column)
        assert [m.step for m in logged] == [1, 2, 3], column
        assert [m.value for m in logged] == pytest.approx(history[column].tolist()), column
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert run.data.metrics["final/test_salary_rmse"] == pytest.approx(metrics["test"]["salary"]["rmse"])
    files = {f.path for f in client.list_artifacts(run_id)}
    assert files == {"config.yaml", "metrics.csv", "metrics.json"}  # report: false, so no report.html nor plots/


def test_a_folder_of_plots_goes_to_mlflow_whole(tmp_path, store):
    from dlrun.training.tracking import MlflowTracker

    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "loss.png").write_bytes(b"png")
    (tmp_path / "metrics.json").write_text("{}")
    tracker = MlflowTracker(store, "plots", tmp_path / "run", {"seed": 0}, None)
    tracker.open()
    tracker.begin([{"epoch": 1, "train_loss": 0.5}])
    tracker.close("completed", {"final/test_rmse": 2.0}, [tmp_path / "metrics.json", tmp_path / "plots"], 1)
    client = _client(store)
    assert {f.path for f in client.list_artifacts(tracker.run_id)} == {"metrics.json", "plots"}
    assert (Path(store[len("sqlite:///"):]).parent / "mlartifacts" / tracker.run_id / "artifacts" / "plots" / "loss.png").is_file()  # beside the store
    assert [f.path for f in client.list_artifacts(tracker.run_id, "plots")] == ["plots/loss.png"]
    assert client.get_run(tracker.run_id).data.metrics == {"train_loss": 0.5, "final/test_rmse": 2.0}


@pytest.mark.slow
def test_a_resumed_run_continues_its_mlflow_run_and_event_files_without_repeating_an_epoch(tracked_runs, store):
    resumed, run_dir = tracked_runs["results"]["resumed"], tracked_runs["run_dirs"]["killed"]
    assert resumed.returncode == 0, resumed.stderr
    run_id = tracked_runs["killed_record"]["tracking"]["mlflow_run_id"]  # written before the first epoch
    record = json.loads((run_dir / "run.json").read_text())
    assert record["tracking"]["mlflow_run_id"] == run_id and record["resumed"][0]["after_epoch"] == 2
    client = _client(store)
    (experiment,) = [e for e in client.search_experiments() if e.name == "killed"]
    assert [r.info.run_id for r in client.search_runs([experiment.experiment_id])] == [run_id]  # no second MLflow run
    history = pd.read_csv(run_dir / "metrics.csv")
    # Epoch 2 was in last.pt but never tracked (the kill came first): sent at the resume, and each epoch once.
    logged = client.get_metric_history(run_id, "train_loss")
    assert sorted(m.step for m in logged) == [1, 2, 3, 4]
    assert [m.value for m in sorted(logged, key=lambda m: m.step)] == pytest.approx(history["train_loss"].tolist())
    assert client.get_run(run_id).info.status == "FINISHED"
    scalars = _events(run_dir).Scalars("train_loss")
    assert [s.step for s in scalars] == [1, 2, 3, 4]
    assert [s.value for s in scalars] == pytest.approx(history["train_loss"].tolist(), rel=1e-6)
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 2  # the old file stays


@pytest.mark.slow
def test_an_unreachable_mlflow_store_is_a_warning_and_the_run_completes(tracked_runs):
    result, run_dir = tracked_runs["results"]["unreachable"], tracked_runs["run_dirs"]["unreachable"]
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "MLflow tracking stopped at start" in result.stderr
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed" and record["tracking"]["mlflow_run_id"] is None
    (warning,) = [w for w in record["warnings"] if "MLflow" in w]
    assert warning.startswith("MLflow tracking stopped at start (") and warning.endswith("the run went on without it")
    assert [s.step for s in _events(run_dir).Scalars("val_loss")] == [1, 2]  # TensorBoard carried on


def test_a_missing_tracker_package_is_a_warning_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    tracking = Tracking(validate_config({"data": DATA, "tracking": {"tensorboard": True}}), Path("run"), Path("run/tb"))
    tracking.on_train_begin(TrainState(model=None, optimizer=None, monitor="val_loss", maximise=False))
    assert not tracking.backends
    assert tracking.warnings == ["TensorBoard tracking stopped at start (ModuleNotFoundError: torch.utils.tensorboard is "
                                 "not installed: pip install 'dlrun[track]'); the run went on without it"]


def test_an_interrupted_run_marks_its_mlflow_run_killed_and_its_resume_finishes_it(tmp_path, store):
    from dlrun.run.runner import resume, train

    cfg = validate_config(merge(FAST, {"data": DATA, "train": {"epochs": 3, "early_stopping": None},
                                       "tracking": {"mlflow": {"uri": store, "experiment": "interrupted"}}}))
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "runs", callbacks=[InterruptAfter(2)])
    (run_dir,) = (tmp_path / "runs").iterdir()
    run_id = json.loads((run_dir / "run.json").read_text())["tracking"]["mlflow_run_id"]
    client = _client(store)
    assert client.get_run(run_id).info.status == "KILLED"
    resume(run_dir)
    assert client.get_run(run_id).info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run_id, "val_loss")] == [1, 2, 3]

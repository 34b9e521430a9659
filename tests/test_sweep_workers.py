"""Several workers on one study: two processes sharing the SQLite study, a worker SIGKILLed mid-trial and the study
continued by running the same command again, and two workers sharing a study on a real PostgreSQL server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from dlrun.sweeps.study import open_storage, retry_of, sqlite_url

from conftest import REPO, make_regression_frame, run_cli, write_config

pytestmark = pytest.mark.slow

SPACE = {"optimizer.lr": {"log_uniform": [1.0e-3, 1.0e-1]}, "optimizer.momentum": {"uniform": [0.85, 0.99]}}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    data = tmp_path / "houses.csv"
    make_regression_frame(150).to_csv(data, index=False)
    return write_config(tmp_path / "houses.yaml", {"path": str(data), "target": "price"}, name="houses",
                        optimizer={"name": "sgd", "lr": 0.01}, train={"epochs": 6},
                        search={"space": SPACE, "sampler": "random", "pruner": "none"})


def trials_of(storage_url: str, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=open_storage(storage_url)).get_trials()


def assert_one_run_dir_per_trial(sweep_dir: Path, trials: list) -> None:
    """Every trial that trained has its own run directory, which names it; none is shared or missing."""
    run_dirs = [t.user_attrs["run_dir"] for t in trials if t.state == TrialState.COMPLETE]
    assert len(run_dirs) == len(set(run_dirs))
    for t in trials:
        if t.state == TrialState.COMPLETE:
            info = json.loads((sweep_dir / t.user_attrs["run_dir"] / "run.json").read_text())
            assert info["sweep"]["trial"] == t.number and info["status"] == "completed"
    assert len(list((sweep_dir / "trials").iterdir())) == len([t for t in trials if t.state != TrialState.WAITING])


def assert_two_workers_ran_the_study(result: subprocess.CompletedProcess, sweep_dir: Path, trials: list, n: int) -> None:
    assert result.returncode == 0, result.stderr
    assert sorted(t.number for t in trials) == list(range(n))  # nothing lost, nothing run twice
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len({(t.params["optimizer.lr"], t.params["optimizer.momentum"]) for t in trials}) == n
    assert_one_run_dir_per_trial(sweep_dir, trials)
    assert len(pd.read_csv(sweep_dir / "trials.csv")) == n
    assert len({t.user_attrs["worker"]["pid"] for t in trials}) <= 2


def test_two_workers_share_the_sqlite_study_without_lost_or_duplicated_trials(tmp_path, config):
    result = run_cli("sweep", config, "--workers", "2", "--trials", "6", "--runs-dir", tmp_path / "runs")
    sweep_dir = tmp_path / "runs" / "sweeps" / "houses"
    trials = trials_of(sqlite_url(sweep_dir / "study.db"), "houses")
    assert_two_workers_ran_the_study(result, sweep_dir, trials, 6)
    assert "study houses: 6 complete of 6" in result.stderr


def _sweep_killed_mid_trial(tmp_path: Path, config: Path, workers: int) -> subprocess.CompletedProcess:
    """Run the sweep from Python with a callback that SIGKILLs the first worker reaching epoch 2 of a trial."""
    script = (
        "import sys; from pathlib import Path; from dlrun.config.load import load_config; from dlrun.sweeps.driver import sweep; "
        "from sweep_helpers import KillOnce; "
        f"sweep(load_config({str(config)!r}, ['search.trials=3']), {str(tmp_path / 'runs')!r}, workers={workers}, "
        f"callbacks=[KillOnce(Path({str(tmp_path / 'killed')!r}))])"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_a_worker_killed_mid_trial_loses_only_that_trial_and_the_same_command_continues(tmp_path, config):
    killed = _sweep_killed_mid_trial(tmp_path, config, workers=1)
    assert killed.returncode == -9, killed.stderr
    sweep_dir = tmp_path / "runs" / "sweeps" / "houses"
    url = sqlite_url(sweep_dir / "study.db")
    [lost] = trials_of(url, "houses")
    assert lost.state == TrialState.RUNNING  # nobody could record anything: the process is gone

    result = run_cli("sweep", config, "--trials", "3", "--runs-dir", tmp_path / "runs")
    assert result.returncode == 0, result.stderr
    trials = trials_of(url, "houses")
    assert [t.state for t in trials] == [TrialState.FAIL, *[TrialState.COMPLETE] * 3]  # lost, then 3 for the budget
    [rerun] = [t for t in trials if retry_of(t) == lost.number]
    assert rerun.params == lost.params  # the lost trial is re-queued with its values
    assert_one_run_dir_per_trial(sweep_dir, trials)
    [lost_dir] = (sweep_dir / "trials").glob(f"*-trial{lost.number:04d}")
    lost_info = json.loads((lost_dir / "run.json").read_text())
    assert lost_info["status"] == "failed" and "sweep trial lost: its worker" in lost_info["error"]
    table = pd.read_csv(sweep_dir / "trials.csv")
    assert (table["state"] == "complete").sum() == 3
    assert table.loc[table["trial"] == rerun.number, "note"].item() == f"re-run of trial {lost.number}"


def test_a_worker_killed_among_two_is_replaced_by_the_other(tmp_path, config):
    killed = _sweep_killed_mid_trial(tmp_path, config, workers=2)
    assert killed.returncode == 0, killed.stderr  # the parent re-queued the lost trial; the other worker ran it
    sweep_dir = tmp_path / "runs" / "sweeps" / "houses"
    trials = trials_of(sqlite_url(sweep_dir / "study.db"), "houses")
    [lost] = [t for t in trials if t.state == TrialState.FAIL]
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3
    assert [t.params for t in trials if retry_of(t) == lost.number] == [lost.params]
    assert_one_run_dir_per_trial(sweep_dir, trials)


def _postgres_url() -> str:
    url = os.environ.get("DLRUN_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("DLRUN_TEST_POSTGRES_URL is not set (.ci/run starts a PostgreSQL server and sets it)")
    try:
        import psycopg

        psycopg.connect(url, connect_timeout=5).close()
    except Exception as exc:  # any failure to connect means: no server to test against
        pytest.skip(f"no PostgreSQL server at DLRUN_TEST_POSTGRES_URL ({type(exc).__name__}: {exc})")
    return url


def test_two_workers_share_a_postgresql_study(tmp_path, config):
    url = _postgres_url()
    study = f"houses-{uuid.uuid4().hex[:8]}"  # the server outlives the test: a fresh study each time
    result = run_cli("sweep", config, "--workers", "2", "--trials", "6", "--storage", url, "--study", study,
                     "--runs-dir", tmp_path / "runs")
    sweep_dir = tmp_path / "runs" / "sweeps" / study
    assert_two_workers_ran_the_study(result, sweep_dir, trials_of(url, study), 6)
    assert not (sweep_dir / "study.db").exists()
    assert json.loads((sweep_dir / "sweep.json").read_text())["storage"] == url


def _backdate_heartbeat(storage, trial_id: int, seconds: float) -> None:
    """Move a trial's last heartbeat `seconds` into the past, in the storage itself: no waiting for it to age."""
    from datetime import timedelta

    from optuna.storages._rdb.models import TrialHeartbeatModel
    from sqlalchemy import select, update

    this_trial = TrialHeartbeatModel.trial_id == trial_id
    with storage.engine.begin() as connection:
        last = connection.execute(select(TrialHeartbeatModel.heartbeat).where(this_trial)).scalar_one()
        connection.execute(update(TrialHeartbeatModel).where(this_trial).values(heartbeat=last - timedelta(seconds=seconds)))


def test_a_trial_whose_machine_went_silent_is_requeued_after_its_heartbeat_goes_stale(tmp_path, config):
    """A worker on another machine cannot be checked by pid: its trial is lost once no heartbeat came for a while."""
    from dlrun.sweeps import study as sweep_study
    from dlrun.config.load import load_config
    from dlrun.sweeps.driver import distributions, plan_sweep, work

    cfg = load_config(config, ["search.trials=1"])
    plan = plan_sweep(cfg, tmp_path / "runs")
    storage = open_storage(plan.storage_url)
    study = optuna.load_study(study_name=plan.study, storage=storage)
    with sweep_study.optuna_quiet():
        silent = study.ask(distributions(cfg.search.space))
    silent.set_user_attr("worker", {"host": "a-machine-that-died", "pid": 1})
    storage.record_heartbeat(silent._trial_id)
    _backdate_heartbeat(storage, silent._trial_id, sweep_study.STALE_AFTER_S + 1)  # the machine went silent that long ago

    work(plan)  # waits for nothing: the silent trial is stale, failed, re-queued and run here
    trials = trials_of(plan.storage_url, plan.study)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert retry_of(trials[1]) == silent.number and trials[1].params == silent.params

"""dlrun sweep end to end: grid and random sweeps through the real CLI, continuing a study, pruning, seeding, the
test split scored once, and every kind of bad input stopped before a trial starts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from dlrun.config.load import load_config
from dlrun.core.errors import ConfigError
from dlrun.run.runner import resume
from dlrun.sweeps.driver import sweep
from dlrun.sweeps.summary import summarise
from dlrun.sweeps.study import open_storage, sqlite_url

from conftest import InterruptAfter, make_regression_frame, run_cli, run_cli_many, write_config

pytestmark = pytest.mark.slow

PNG = b"\x89PNG\r\n\x1a\n"
GRID_SPACE = {"model.hidden": {"choice": [[8], [16, 8]]},
              "optimizer.lr": {"log_uniform": [1.0e-4, 1.0e-1], "grid": [0.003, 0.03]}}
RANDOM_SPACE = {"optimizer.lr": {"log_uniform": [1.0e-4, 1.0e-1]}, "optimizer.momentum": {"uniform": [0.85, 0.99]}}


@pytest.fixture
def houses(tmp_path: Path) -> Path:
    path = tmp_path / "houses.csv"
    make_regression_frame(150).to_csv(path, index=False)
    return path


def sweep_config(tmp_path: Path, houses: Path, name: str = "houses", **search) -> Path:
    search = {"space": RANDOM_SPACE, "sampler": "random", **search}
    return write_config(tmp_path / f"{name}.yaml", {"path": str(houses), "target": "price"}, name=name,
                        optimizer={"name": "sgd", "lr": 0.01}, search=search)


def study_of(sweep_dir: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(sqlite_url(sweep_dir / "study.db")))


def test_grid_sweep_through_the_cli_tries_every_point_once_and_scores_only_the_pick_on_test(tmp_path, houses):
    config = sweep_config(tmp_path, houses, sampler="grid", space=GRID_SPACE, objective="val_mae")
    result = run_cli("sweep", config, "--runs-dir", tmp_path / "runs")
    assert result.returncode == 0, result.stderr
    sweep_dir = Path(result.stdout.strip().splitlines()[-1])
    assert sweep_dir == tmp_path / "runs" / "sweeps" / "houses"
    assert "study houses: 4 complete of 4; objective val_mae (minimize)" in result.stderr

    table = pd.read_csv(sweep_dir / "trials.csv")
    assert sorted(table["trial"]) == [0, 1, 2, 3] and set(table["state"]) == {"complete"}
    assert set(zip(table["param:model.hidden"], table["param:optimizer.lr"])) == {
        ("[8]", 0.003), ("[8]", 0.03), ("[16, 8]", 0.003), ("[16, 8]", 0.03)}
    assert table["objective"].is_monotonic_increasing  # best first
    assert (table["seconds"] > 0).all() and (table["epochs"] == 5).all()
    run_dirs = [sweep_dir / run_dir for run_dir in table["run_dir"]]
    assert len(set(run_dirs)) == 4

    for row, run_dir in zip(table.to_dict("records"), run_dirs):
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert cfg["search"] is None and cfg["optimizer"]["lr"] == row["param:optimizer.lr"]
        assert cfg["model"]["hidden"] == json.loads(row["param:model.hidden"])
        run_info = json.loads((run_dir / "run.json").read_text())
        assert run_info["status"] == "completed" and run_info["sweep"]["trial"] == row["trial"]
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert set(metrics) == {"train", "val"}  # trials are chosen without the test split
        assert metrics["val"]["price"]["mae"] == pytest.approx(row["objective"])
        assert not (run_dir / "predictions.csv").exists()
        assert not (run_dir / "report.html").exists()  # trials skip plots; `dlrun report` draws them on demand

    info = json.loads((sweep_dir / "sweep.json").read_text())
    best_dir = run_dirs[0]
    assert info["best"]["trial"] == table["trial"][0] and Path(info["best"]["run_dir"]) == best_dir
    assert info["best"]["val"]["price"]["mae"] == pytest.approx(table["objective"][0])
    assert info["best"]["test"]["price"].keys() == {"mae", "rmse", "r2"}
    # the test split was scored once, for the pick alone
    assert [run_dir for run_dir in run_dirs if (run_dir / "eval.json").exists()] == [best_dir]
    assert json.loads((best_dir / "eval.json").read_text())["metrics"] == info["best"]["test"]
    assert "test (once)" in result.stderr

    best_cfg = load_config(sweep_dir / "best_config.yaml")
    assert best_cfg.search is None and best_cfg.optimizer.lr == table["param:optimizer.lr"][0]
    for png in ("search_space.png", "objective.png", "importances.png"):
        assert (sweep_dir / png).read_bytes().startswith(PNG)

    # every trial is a normal run directory; sweep-report rewrites the summary from the study without training
    (sweep_dir / "objective.png").unlink()
    other = run_dirs[-1]
    new_rows = tmp_path / "new.csv"
    make_regression_frame(seed=3).head(5).drop(columns="price").to_csv(new_rows, index=False)
    done = run_cli_many({"eval": (["eval", other], None), "predict": (["predict", other, new_rows], None),
                         "report": (["sweep-report", sweep_dir], None), "trial_report": (["report", other], None)})
    assert all(r.returncode == 0 for r in done.values()), {k: r.stderr for k, r in done.items()}
    assert json.loads((other / "eval.json").read_text())["source"] == "test split"
    assert len(pd.read_csv(tmp_path / "new_predictions.csv")) == 5
    assert (other / "report.html").stat().st_size > 0 and (other / "plots" / "loss.png").read_bytes().startswith(PNG)
    assert (sweep_dir / "objective.png").read_bytes().startswith(PNG)
    assert json.loads((sweep_dir / "sweep.json").read_text())["best"]["test"] == info["best"]["test"]
    assert study_of(sweep_dir, "houses").user_attrs["test_score"]["trial"] == info["best"]["trial"]


def test_running_the_same_command_again_continues_the_study(tmp_path, houses):
    config = sweep_config(tmp_path, houses)
    sweep(load_config(config, ["search.trials=2"]), tmp_path / "runs")  # what `dlrun sweep CONFIG --trials 2` runs
    sweep_dir = tmp_path / "runs" / "sweeps" / "houses"
    before = pd.read_csv(sweep_dir / "trials.csv").set_index("trial")

    more = run_cli("sweep", config, "--trials", "3", "--runs-dir", tmp_path / "runs")
    assert more.returncode == 0, more.stderr
    assert "trial 2 complete" in more.stderr and "trial 0 complete" not in more.stderr
    after = pd.read_csv(sweep_dir / "trials.csv").set_index("trial")
    assert sorted(after.index) == [0, 1, 2]
    assert after.loc[[0, 1], "run_dir"].tolist() == before.loc[[0, 1], "run_dir"].tolist()
    assert len(list((sweep_dir / "trials").iterdir())) == 3

    again = sweep(load_config(config, ["search.trials=3"]), tmp_path / "runs")  # complete: trains nothing
    assert again.complete and len(again.trials) == 3 and len(list((sweep_dir / "trials").iterdir())) == 3


def test_a_study_cannot_be_continued_with_a_different_config(tmp_path, houses):
    config = sweep_config(tmp_path, houses, trials=1)
    sweep(load_config(config), tmp_path / "runs")
    with pytest.raises(ConfigError) as caught:
        sweep(load_config(config, ["train.epochs=3"]), tmp_path / "runs")
    assert "study 'houses' was started from a different config (changed: train.epochs)" in str(caught.value)
    assert "--study NEW_NAME" in str(caught.value)
    assert len(list((tmp_path / "runs" / "sweeps" / "houses" / "trials").iterdir())) == 1


@pytest.mark.parametrize("search, options, message", [
    ({"space": {"optimizer.momentum": {"uniform": [0.9, 0.9]}}}, {},
     "search.space.optimizer.momentum: uniform: the range [0.9, 0.9] is empty; low must be below high"),
    ({"space": {"optimizer.lr": {"log_uniform": [1.0e-3, 20.0]}}}, {}, "search.space.optimizer.lr = 20.0 is invalid:"),
    ({"space": {"model": {"choice": [1, 2]}}}, {}, "search.space: 'model' is a section, not a value"),
    ({"objective": "train_loss"}, {},
     "search.objective: 'train_loss' is not a validation metric of this data; allowed: val_loss, val_mae, val_rmse, val_r2"),
    ({}, {"storage": "mysql://nobody@127.0.0.1/none"}, "--storage: 'mysql://nobody@127.0.0.1/none' is not supported"),
    ({}, {"workers": 0}, "--workers must be at least 1, got 0"),
    ({}, {"study": "../up"}, "--study: '../up' must use only letters"),
    ({}, {"study": ".."}, "--study: '..' must use only letters"),  # would name runs/ itself
    (None, {}, "the config has no search section"),
])
def test_bad_input_is_a_config_error_before_any_trial(tmp_path, houses, search, options, message):
    path = (sweep_config(tmp_path, houses, **search) if search is not None else
            write_config(tmp_path / "plain.yaml", {"path": str(houses), "target": "price"}))
    with pytest.raises(ConfigError) as caught:
        sweep(load_config(path), tmp_path / "runs", **options)
    assert message in str(caught.value)
    assert not (tmp_path / "runs").exists()  # no sweep directory, no trial


def test_bad_input_through_the_cli_is_one_line_and_exit_2(tmp_path, houses):
    unknown = sweep_config(tmp_path, houses, name="a", space={"optimizer.lrr": {"uniform": [0.1, 0.2]}})
    unreachable = ["--storage", "postgresql://nobody@127.0.0.1:1/none"]
    results = run_cli_many({"unknown key": (["sweep", unknown, "--runs-dir", tmp_path / "runs"], None),
                            "storage": (["sweep", sweep_config(tmp_path, houses, name="b"), *unreachable,
                                         "--runs-dir", tmp_path / "runs"], None)})
    expected = {"unknown key": "Error: search.space: 'optimizer.lrr' is not a config key; did you mean 'optimizer.lr'?",
                "storage": "Error: --storage postgresql://nobody@127.0.0.1:1/none: cannot open the study storage ("}
    for key, result in results.items():
        assert result.returncode == 2 and expected[key] in result.stderr, (key, result.stderr)
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_the_same_seed_proposes_the_same_trials_and_another_seed_others(tmp_path, houses):
    cfg = load_config(sweep_config(tmp_path, houses, trials=3, seed=11, sampler="tpe"), ["train.epochs=2"])

    def params(study: str, seed: int) -> list:
        seeded = cfg.model_copy(update={"search": cfg.search.model_copy(update={"seed": seed})})
        summary = sweep(seeded, tmp_path / "runs", study=study)
        return summary.trials.sort_values("trial")[["param:optimizer.lr", "param:optimizer.momentum"]].values.tolist()

    first = params("first", 11)
    assert params("second", 11) == first
    assert params("third", 12) != first


def test_hopeless_trials_are_pruned_and_their_runs_say_so(tmp_path, houses):
    cfg = load_config(sweep_config(tmp_path, houses, trials=6, pruner="successive_halving", prune_warmup_epochs=1,
                                   space={"optimizer.lr": {"log_uniform": [1.0e-5, 1.0e-1]}}), ["train.epochs=8"])
    summary = sweep(cfg, tmp_path / "runs")
    pruned = summary.trials[summary.trials["state"] == "pruned"]
    assert summary.states["pruned"] == len(pruned) >= 1
    for row in pruned.itertuples():
        run_info = json.loads((summary.sweep_dir / row.run_dir / "run.json").read_text())
        assert run_info["status"] == "completed" and run_info["sweep"]["state"] == "pruned"
        assert run_info["stop_reason"].startswith("pruned by the sweep's successive_halving pruner")
        assert row.epochs < 8
    assert summary.best is not None and summary.best["trial"] not in set(pruned["trial"])


def test_ctrl_c_requeues_the_interrupted_trial_and_the_next_run_finishes_it(tmp_path, houses):
    cfg = load_config(sweep_config(tmp_path, houses, trials=2))
    with pytest.raises(KeyboardInterrupt):
        sweep(cfg, tmp_path / "runs", callbacks=[InterruptAfter(2)])
    sweep_dir = tmp_path / "runs" / "sweeps" / "houses"
    [interrupted, queued] = study_of(sweep_dir, "houses").get_trials()
    assert interrupted.state == optuna.trial.TrialState.FAIL and queued.state == optuna.trial.TrialState.WAITING
    assert queued.params == interrupted.params
    [run_dir] = (sweep_dir / "trials").iterdir()
    assert json.loads((run_dir / "run.json").read_text())["error"] == "interrupted"

    summary = sweep(cfg, tmp_path / "runs")
    assert summary.complete and summary.states == {"complete": 2, "pruned": 0, "running": 0, "waiting": 0, "failed": 0}
    assert summary.trials.loc[summary.trials["trial"] == 1, "note"].item() == "re-run of trial 0"

    resume(run_dir)  # the interrupted trial resumed by hand still leaves the test split alone
    assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"
    assert set(json.loads((run_dir / "metrics.json").read_text())) == {"train", "val"}
    assert not (run_dir / "predictions.csv").exists()


def test_a_machine_without_the_best_trials_run_directory_reports_it_from_the_study(tmp_path, houses):
    """With --storage shared by machines, a sweep directory holds only the trials its machine ran."""
    cfg = load_config(sweep_config(tmp_path, houses, trials=2))
    here = sweep(cfg, tmp_path / "runs")
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(here.sweep_dir, elsewhere, ignore=shutil.ignore_patterns("trials"))
    summary = summarise(elsewhere)
    assert summary.best["trial"] == here.best["trial"] and summary.best["run_dir"] is None
    assert summary.best["val"] == here.best["val"] and summary.best["test"] == here.best["test"]
    rebuilt, trained = load_config(elsewhere / "best_config.yaml"), load_config(here.sweep_dir / "best_config.yaml")
    assert rebuilt.optimizer == trained.optimizer and rebuilt.model == trained.model and rebuilt.search is None


def test_a_workers_user_error_is_raised_in_the_parent_not_exited_on():
    """A worker process reports a DlrunError back instead of calling SystemExit: the CLI owns exit codes."""
    import queue

    from dlrun.core.errors import ConfigError
    from dlrun.sweeps.driver import SweepPlan, _raise_worker_error, _work_in_process

    errors = queue.Queue()
    plan = SweepPlan(**{**{f: "" for f in SweepPlan.__dataclass_fields__}, "config_yaml": "optimizer: {lr: -1}\n"})
    _work_in_process(plan, (), None, errors)  # returns: no SystemExit from library code
    with pytest.raises(ConfigError, match="optimizer.lr"):
        _raise_worker_error(errors)
    _raise_worker_error(errors)  # nothing queued: nothing raised

"""End to end: the real `dlrun` CLI in a subprocess, on the shipped configs and on every kind of bad input.

Each CLI call spends most of its time importing torch, so the calls are made in a few batches that run side by side
(module fixtures below); the tests then check exit codes, files and numbers of the finished calls.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from dlrun.config.schema import describe_schema

from conftest import CONFIGS, DATA, REPO, make_classification_frame, run_cli, run_cli_many, write_config

pytestmark = pytest.mark.slow

EPOCHS = 3
FAST_CPU = ["--set", f"train.epochs={EPOCHS}", "--device", "cpu"]  # CPU: the numbers are reproducible on any machine
SHIPPED = ["animals", "salary", "synthetic"]
TASKS = {
    "animals": {"type": "classification"},
    "salary": {"wages": "regression"},
    "synthetic": {"label": "classification", "salary": "regression"},
}
CLASSIFICATION_METRICS = {"accuracy", "precision_macro", "recall_macro", "f1_macro", "auroc"}
REGRESSION_METRICS = {"mae", "rmse", "r2"}


def last_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stdout.strip().splitlines()
    return lines[-1] if lines else ""


def describe(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"


def assert_clean_user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit 2, one `Error: ...` message on stderr naming what is wrong, and no traceback."""
    assert result.returncode == 2, describe(result)
    assert "Error:" in result.stderr, describe(result)
    assert "Traceback" not in result.stderr + result.stdout, describe(result)
    for fragment in fragments:
        assert fragment in result.stderr, f"{fragment!r} not in the message\n{describe(result)}"


# ---- fixtures: the CLI calls, made in batches ----------------------------------------------------
@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def trained(workdir) -> dict[str, subprocess.CompletedProcess]:
    """`dlrun train` on each shipped config (3 epochs), synthetic twice, and a user CSV given by a relative path."""
    project = workdir / "project"
    project.mkdir()
    make_classification_frame(n_rows=80).to_csv(project / "pets.csv", index=False)
    write_config(project / "pets.yaml", {"path": "pets.csv", "target": "species"}, name="pets")
    commands = {
        name: (["train", CONFIGS / f"{name}.yaml", *FAST_CPU, "--runs-dir", workdir / "runs" / name], workdir) for name in SHIPPED
    }
    commands["synthetic_again"] = (["train", CONFIGS / "synthetic.yaml", *FAST_CPU, "--runs-dir", workdir / "runs" / "again"], workdir)
    commands["pets"] = (["train", "pets.yaml", "--runs-dir", "runs"], project)  # relative paths, run from the project
    return run_cli_many(commands)


def run_dir_of(trained, name: str) -> Path:
    result = trained[name]
    assert result.returncode == 0, describe(result)
    return Path(last_line(result))


def predict_input(run_dir: Path, targets: list[str]) -> pd.DataFrame:
    """The run's own test rows, features only, columns reversed, with an extra column the model never saw."""
    rows = pd.read_csv(run_dir / "predictions.csv")
    features = [c for c in rows.columns if c not in targets and "_pred" not in c and "_proba_" not in c]
    frame = rows[features[::-1]].copy()
    frame.insert(1, "note", [f"row{i}" for i in range(len(frame))])
    return frame


@pytest.fixture(scope="module")
def followups(trained, workdir) -> dict[str, subprocess.CompletedProcess]:
    """`eval` and `predict` on the finished runs, good and bad, all at once."""
    inputs = workdir / "inputs"
    inputs.mkdir()
    commands = {}
    for name in SHIPPED:
        run_dir = run_dir_of(trained, name)
        predict_input(run_dir, list(TASKS[name])).to_csv(inputs / f"{name}.csv", index=False)
        commands[f"eval_{name}"] = (["eval", run_dir], workdir)
        commands[f"predict_{name}"] = (["predict", run_dir, inputs / f"{name}.csv", "--output", inputs / f"{name}_out.csv"], workdir)

    animals = run_dir_of(trained, "animals")
    labelled = pd.read_csv(DATA / "animals.csv").sample(30, random_state=0)
    labelled.to_csv(inputs / "labelled.csv", index=False)
    commands["eval_data"] = (["eval", animals, "--data", inputs / "labelled.csv", "--output", inputs / "eval_data.json"], workdir)

    (workdir / "not_a_run").mkdir()
    commands["eval_not_a_run"] = (["eval", workdir / "not_a_run"], workdir)
    corrupted = workdir / "corrupted"
    shutil.copytree(animals, corrupted)
    (corrupted / "checkpoints" / "best.pt").write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    commands["eval_corrupted"] = (["eval", corrupted], workdir)

    rows = pd.read_csv(inputs / "animals.csv")
    rows.drop(columns=["hair"]).to_csv(inputs / "no_hair.csv", index=False)
    commands["predict_missing_feature"] = (["predict", animals, inputs / "no_hair.csv"], workdir)
    rows.astype({"legs": object}).assign(legs=lambda f: f["legs"].where(f.index != 2, "many")).to_csv(inputs / "text_legs.csv", index=False)
    commands["predict_text_numeric"] = (["predict", animals, inputs / "text_legs.csv"], workdir)

    # The pets run read `pets.csv` relative to its project; a finished run must still evaluate from elsewhere.
    pets = workdir / "project" / run_dir_of(trained, "pets")
    commands["eval_pets_elsewhere"] = (["eval", pets, "--output", inputs / "pets_eval.json"], workdir)
    return run_cli_many(commands)


# Bad training input: (config text, or None for a missing file; extra CLI args; CSV files to write; fragments of the message)
BAD_TRAIN = {
    "missing_config": (None, [], {}, ["not found", "absent.yaml"]),
    "yaml_syntax_error": ("data: {dataset: animals\nseed: [1\n", [], {}, ["not valid YAML"]),
    "unknown_key": ("data: {dataset: animals}\noptimizer: {lrr: 0.1}\n", [], {}, ["optimizer.lrr", "'lr'"]),
    "wrong_type": ("data: {dataset: animals}\nseed: abc\n", [], {}, ["seed", "'abc'"]),
    "out_of_range": ("data: {dataset: animals}\noptimizer: {lr: 0}\n", [], {}, ["optimizer.lr", "greater than 0"]),
    "bad_set_without_equals": ("data: {dataset: animals}\n", ["--set", "model.hidden"], {}, ["--set", "key.path=value"]),
    "missing_csv": ("data: {path: missing.csv, target: y}\n", [], {}, ["missing.csv", "not found"]),
    "empty_csv": ("data: {path: data.csv, target: y}\n", [], {"data.csv": ""}, ["data.csv", "empty"]),
    "header_only_csv": ("data: {path: data.csv, target: y}\n", [], {"data.csv": "x,y\n"}, ["data.csv", "no data rows"]),
    "target_absent": ("data: {path: data.csv, target: cost}\n", [], {"data.csv": "x,y\n1,2\n3,4\n"}, ["'cost'", "x, y"]),
    "names_with_brackets": (  # user text in a message is printed as is, never read as rich markup
        "data: {path: data.csv, target: '[/cost]'}\n", [], {"data.csv": "x,weight [kg]\n1,2\n3,4\n"},
        ["'[/cost]'", "x, weight [kg]"],
    ),
    "text_target_for_regression": (
        "data: {path: data.csv, target: y, task: regression}\n", [],
        {"data.csv": "x,y\n" + "".join(f"{i},{'cat' if i % 2 else 'dog'}\n" for i in range(30))}, ["'y'", "regression"],
    ),
    "bad_split_fractions": (
        "data: {dataset: animals, split: {train: 0.8, val: 0.15, test: 0.15}}\n", [], {}, ["data.split", "sum to 1"],
    ),
}


@pytest.fixture(scope="module")
def bad_train(workdir) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    commands, runs_dirs = {}, {}
    for case, (text, args, files, _) in BAD_TRAIN.items():
        folder = workdir / "bad" / case
        folder.mkdir(parents=True)
        for file_name, content in files.items():
            (folder / file_name).write_text(content)
        config = folder / ("absent.yaml" if text is None else "config.yaml")
        if text is not None:
            config.write_text(text)
        runs_dirs[case] = folder / "runs"
        commands[case] = (["train", config.name, *args, "--runs-dir", runs_dirs[case]], folder)
    results = run_cli_many(commands)
    return {case: (results[case], runs_dirs[case]) for case in BAD_TRAIN}


# ---- the command line itself -------------------------------------------------------------------
@pytest.mark.parametrize("message", ["column 'weight [kg]' is missing", "target '[/kg]' is not in the data"])
def test_error_messages_are_printed_verbatim(capsys, message):
    import typer

    from dlrun.cli.exits import guarded
    from dlrun.core.errors import DataError

    def fail():
        raise DataError(message)

    with pytest.raises(typer.Exit) as caught:
        guarded(fail)
    assert caught.value.exit_code == 2
    assert f"Error: {message}" in capsys.readouterr().err


def test_version_prints_the_version():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip().startswith("dlrun ")
    assert result.stdout.split()[-1][0].isdigit()


def test_help_lists_the_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("train", "eval", "predict", "config"):
        assert command in result.stdout


def test_importing_the_cli_does_not_import_heavy_libraries():
    code = "import dlrun.cli.commands, sys; assert 'torch' not in sys.modules and 'pandas' not in sys.modules and 'sklearn' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr


def test_config_command_documents_every_key():
    result = run_cli("config", "--markdown")
    assert result.returncode == 0, describe(result)
    for key, _, _ in describe_schema():
        assert f"`{key}`" in result.stdout


# ---- train on every shipped config -------------------------------------------------------------
@pytest.mark.parametrize("name", SHIPPED)
def test_train_exits_0_and_prints_the_run_dir_last(trained, name, workdir):
    result = trained[name]
    assert result.returncode == 0, describe(result)
    run_dir = Path(last_line(result))
    assert run_dir.is_dir() and run_dir.parent == workdir / "runs" / name
    assert run_dir.name.endswith(f"-{name}")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("name", SHIPPED)
def test_run_dir_holds_every_artifact(trained, name):
    run_dir = run_dir_of(trained, name)
    expected = {"config.yaml", "run.json", "preprocess.json", "metrics.csv", "metrics.json", "predictions.csv",
                "checkpoints/best.pt", "checkpoints/last.pt"}
    expected |= {f"confusion_{t}.csv" for t, task in TASKS[name].items() if task == "classification"}
    files = {str(path.relative_to(run_dir)) for path in run_dir.rglob("*") if path.is_file()}
    assert expected <= files
    assert not [f for f in files if f.endswith(".tmp") or "/." in f or f.startswith(".")]  # no temp files left
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["train"]["epochs"] == EPOCHS and resolved["data"]["task"] == TASKS[name]


@pytest.mark.parametrize("name", SHIPPED)
def test_run_json_records_a_completed_run(trained, name):
    info = json.loads((run_dir_of(trained, name) / "run.json").read_text())
    assert info["status"] == "completed"
    assert info["seed"] == 0 and info["device"] == "cpu"
    assert info["started"] <= info["ended"]
    assert {"torch", "pandas", "numpy", "dlrun"} <= set(info["versions"])


@pytest.mark.parametrize("name", SHIPPED)
def test_metrics_csv_has_one_row_per_epoch(trained, name):
    history = pd.read_csv(run_dir_of(trained, name) / "metrics.csv")
    assert len(history) == EPOCHS
    assert {"train_loss", "val_loss", "lr", "seconds"} <= set(history.columns)
    assert history["epoch"].tolist() == list(range(1, EPOCHS + 1))
    assert np.isfinite(history[["train_loss", "val_loss", "lr"]].to_numpy()).all()


@pytest.mark.parametrize("name", SHIPPED)
def test_metrics_json_is_shaped_split_target_metric(trained, name):
    metrics = json.loads((run_dir_of(trained, name) / "metrics.json").read_text())
    assert set(metrics) == {"train", "val", "test"}
    for split in metrics.values():
        assert set(split) == set(TASKS[name])
        for target, task in TASKS[name].items():
            assert set(split[target]) == (CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS)
            assert all(isinstance(value, float) for value in split[target].values())


@pytest.mark.parametrize("name", SHIPPED)
def test_checkpoints_load_with_weights_only(trained, name):
    run_dir = run_dir_of(trained, name)
    best = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert isinstance(best["model"], dict) and all(isinstance(t, torch.Tensor) for t in best["model"].values())
    assert last["epoch"] == EPOCHS and 1 <= best["epoch"] <= EPOCHS
    assert "optimizer" in last


@pytest.mark.parametrize("name", SHIPPED)
def test_predictions_csv_has_test_rows_and_prediction_columns(trained, name):
    run_dir = run_dir_of(trained, name)
    predictions = pd.read_csv(run_dir / "predictions.csv")
    info = json.loads((run_dir / "run.json").read_text())
    assert len(predictions) == info["data"]["rows"]["test"]
    for target, task in TASKS[name].items():
        assert target in predictions and f"{target}_pred" in predictions
        if task == "classification":
            proba = predictions[[c for c in predictions if c.startswith(f"{target}_proba_")]]
            assert proba.shape[1] >= 2
            np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
            assert set(predictions[f"{target}_pred"].astype(str)) <= {c.removeprefix(f"{target}_proba_") for c in proba}


@pytest.mark.parametrize("name", [n for n in SHIPPED if "classification" in TASKS[n].values()])
def test_confusion_matrix_counts_the_test_rows(trained, name):
    run_dir = run_dir_of(trained, name)
    predictions = pd.read_csv(run_dir / "predictions.csv")
    for target, task in TASKS[name].items():
        if task != "classification":
            continue
        matrix = pd.read_csv(run_dir / f"confusion_{target}.csv")
        counts = matrix.drop(columns="true").to_numpy()
        assert counts.shape == (len(matrix), len(matrix)) and counts.sum() == len(predictions)
        correct = (predictions[target].astype(str) == predictions[f"{target}_pred"].astype(str)).sum()
        assert np.trace(counts) == correct


def test_animal_predictions_are_class_names(trained):
    predictions = pd.read_csv(run_dir_of(trained, "animals") / "predictions.csv")
    assert set(predictions["type_pred"]) <= {"mammal", "bird", "fish", "invertebrate", "insect", "reptile", "amphibian"}
    assert "name" not in predictions  # not a feature


def test_two_runs_of_the_same_config_give_identical_metrics(trained):
    first, second = run_dir_of(trained, "synthetic"), run_dir_of(trained, "synthetic_again")
    assert first != second
    assert json.loads((first / "metrics.json").read_text()) == json.loads((second / "metrics.json").read_text())
    histories = [pd.read_csv(d / "metrics.csv").drop(columns="seconds") for d in (first, second)]
    pd.testing.assert_frame_equal(*histories)


def test_train_with_a_relative_csv_path_and_runs_dir(trained, workdir):
    run_dir = run_dir_of(trained, "pets")
    assert run_dir.parent == Path("runs")  # relative to where train ran, as given
    assert (workdir / "project" / run_dir / "metrics.json").is_file()


# ---- eval --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SHIPPED)
def test_eval_matches_the_test_metrics_of_training(trained, followups, name):
    result = followups[f"eval_{name}"]
    assert result.returncode == 0, describe(result)
    run_dir = run_dir_of(trained, name)
    assert Path(last_line(result)) == run_dir / "eval.json"
    evaluated = json.loads((run_dir / "eval.json").read_text())
    trained_metrics = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert evaluated["n_rows"] == len(pd.read_csv(run_dir / "predictions.csv"))
    for target, metrics in trained_metrics.items():
        assert evaluated["metrics"][target] == pytest.approx(metrics, rel=1e-6, abs=1e-9)


def test_eval_on_a_labelled_csv(followups, workdir):
    result = followups["eval_data"]
    assert result.returncode == 0, describe(result)
    evaluated = json.loads((workdir / "inputs" / "eval_data.json").read_text())
    assert evaluated["n_rows"] == 30 and set(evaluated["metrics"]["type"]) == CLASSIFICATION_METRICS
    assert 0.0 <= evaluated["metrics"]["type"]["accuracy"] <= 1.0


def test_eval_works_from_another_working_directory(followups):
    # config.yaml is "fully resolved": a run trained on `data.path: pets.csv` must not depend on the cwd of eval.
    result = followups["eval_pets_elsewhere"]
    assert result.returncode == 0, describe(result)


def test_eval_on_a_non_run_directory_is_a_clean_error(followups):
    assert_clean_user_error(followups["eval_not_a_run"], "not_a_run", "config.yaml")


def test_eval_on_a_corrupted_checkpoint_is_a_clean_error(followups):
    assert_clean_user_error(followups["eval_corrupted"], "best.pt")


# ---- predict -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SHIPPED)
def test_predict_keeps_extra_columns_and_reproduces_training_predictions(trained, followups, workdir, name):
    result = followups[f"predict_{name}"]
    assert result.returncode == 0, describe(result)
    output = workdir / "inputs" / f"{name}_out.csv"
    assert Path(last_line(result)) == output
    given = pd.read_csv(workdir / "inputs" / f"{name}.csv")
    predicted = pd.read_csv(output)
    assert list(predicted.columns[: len(given.columns)]) == list(given.columns)  # input kept, in its order
    assert predicted["note"].tolist() == given["note"].tolist()
    saved = pd.read_csv(run_dir_of(trained, name) / "predictions.csv")
    for target, task in TASKS[name].items():
        if task == "classification":  # class names, exactly as training predicted them
            assert predicted[f"{target}_pred"].tolist() == saved[f"{target}_pred"].tolist()
        else:  # original units
            np.testing.assert_allclose(predicted[f"{target}_pred"], saved[f"{target}_pred"], rtol=1e-6)


def test_salary_predictions_are_plausible_dollars_per_hour(trained, followups, workdir):
    assert followups["predict_salary"].returncode == 0, describe(followups["predict_salary"])
    wages = pd.read_csv(workdir / "inputs" / "salary_out.csv")["wages_pred"]
    true = pd.read_csv(DATA / "salary.csv")["wages"]
    assert true.quantile(0.05) < wages.median() < true.quantile(0.95)  # dollars/hour, not standard deviations
    assert wages.between(-10, 100).all() and wages.std() > 0.5


def test_synthetic_salary_predictions_are_in_dollars(followups, workdir):
    salary = pd.read_csv(workdir / "inputs" / "synthetic_out.csv")["salary_pred"]
    assert 20_000 < salary.median() < 90_000


def test_predict_with_a_missing_feature_column_is_a_clean_error(followups):
    assert_clean_user_error(followups["predict_missing_feature"], "hair")


def test_predict_with_text_in_a_numeric_column_is_a_clean_error(followups):
    assert_clean_user_error(followups["predict_text_numeric"], "'legs'", "'many'")


# ---- bad training input ------------------------------------------------------------------------
@pytest.mark.parametrize("case", list(BAD_TRAIN))
def test_bad_train_input_is_a_clean_error_and_leaves_no_run(bad_train, case):
    result, runs_dir = bad_train[case]
    assert_clean_user_error(result, *BAD_TRAIN[case][3])
    assert result.stdout.strip() == ""
    assert not runs_dir.exists() or not any(runs_dir.iterdir()), f"a run directory was left in {runs_dir}"

"""Bad input a tester found: each becomes one `Error: ...` line and exit 2 (or a clear warning), never a traceback.

Two tiny runs are trained in-process once (a finished one and one interrupted after its first epoch); the CLI calls
that need torch run side by side in one batch, as in test_cli.py.
"""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import dlrun.run.runner as runner
from dlrun.run.directory import create_run_dir, open_run
from dlrun.run.record import read_record
from dlrun.training.checkpoint import load_checkpoint
from dlrun.config.load import load_config, validate_config
from dlrun.model.device import resolve_device
from dlrun.core.errors import ConfigError, RunError
from dlrun.inference.batch import evaluate, predict
from dlrun.run.outputs import with_predictions
from dlrun.run.runner import out_of_memory_explained, resume, train

from conftest import InterruptAfter, run_cli, run_cli_many

TINY = {
    "seed": 0, "device": "cpu",
    "data": {"dataset": "synthetic", "synthetic": {"n_samples": 60, "n_features": 3}},
    "model": {"hidden": [8], "dropout": 0.0},
    "train": {"epochs": 2, "early_stopping": None},
}



@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A finished run, and a run interrupted after epoch 1 of 3 (status interrupted, best.pt from epoch 1)."""
    root = tmp_path_factory.mktemp("runs")
    finished = train(validate_config(TINY), root / "finished")
    with pytest.raises(KeyboardInterrupt):
        train(validate_config({**TINY, "train": {"epochs": 3, "early_stopping": None}}), root / "interrupted",
              callbacks=[InterruptAfter(1)])
    (interrupted,) = (root / "interrupted").iterdir()
    return {"finished": finished, "interrupted": interrupted, "root": root}


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / Path(run_dir).name))


def assert_clean_user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    described = f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    assert result.returncode == 2, described
    assert "Error:" in result.stderr, described
    assert "Traceback" not in result.stdout + result.stderr, described
    for fragment in fragments:
        assert fragment in result.stderr, f"{fragment!r} missing\n{described}"


@pytest.fixture(scope="module")
def cli_results(runs, tmp_path_factory):
    """Every CLI call of this module that imports torch, made at once: each spends most of its time importing."""
    work = tmp_path_factory.mktemp("cli")
    finished = runs["finished"].run_dir
    bad_checkpoint = copy_run(finished, work)
    torch.save({"version": 1, "model": [1, 2]}, bad_checkpoint / "checkpoints" / "best.pt")
    rows = pd.read_csv(finished / "predictions.csv")[["x0", "x1", "x2"]]
    rows.to_csv(work / "rows.csv", index=False)
    (work / "a_file").write_text("")
    config = work / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    return run_cli_many({
        "bad_checkpoint": (["eval", bad_checkpoint], work),
        "output_under_a_file": (["predict", finished, work / "rows.csv", "--output", work / "a_file" / "out.csv"], work),
        "device_gpu": (["predict", finished, work / "rows.csv", "--device", "gpu"], work),
        "eval_interrupted": (["eval", runs["interrupted"], "--output", work / "eval.json"], work),
        "predict_interrupted": (["predict", runs["interrupted"], work / "rows.csv", "--output", work / "p.csv"], work),
        "train_all_epochs": (["train", config, "--runs-dir", work / "runs"], work),
    })


# ---- 1. a best.pt whose weights are not a state_dict ---------------------------------------------
def test_checkpoint_whose_model_is_not_a_state_dict_is_a_run_error(tmp_path):
    path = tmp_path / "best.pt"
    torch.save({"version": 1, "model": [1, 2]}, path)
    with pytest.raises(RunError, match="not a state_dict"):
        load_checkpoint(path)
    torch.save({"version": 1, "model": {"weight": "not a tensor"}}, path)
    with pytest.raises(RunError, match="not a state_dict"):
        load_checkpoint(path)


def test_loading_a_plain_pickle_raises_without_torchs_warning(tmp_path):
    path = tmp_path / "best.pt"
    path.write_bytes(pickle.dumps(Counter(a=1), protocol=4))  # torch warns about the protocol, then refuses the class
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(RunError, match="corrupted or not a dlrun checkpoint"):
            load_checkpoint(path)
    assert not caught


def test_eval_of_a_damaged_checkpoint_is_one_clean_error_without_torch_warnings(cli_results):
    result = cli_results["bad_checkpoint"]
    assert_clean_user_error(result, "best.pt")
    assert "Warning" not in result.stderr and result.stderr.lstrip().startswith("Error:")


def test_checkpoint_for_another_model_is_a_run_error(runs, tmp_path):
    run_dir = copy_run(runs["finished"].run_dir, tmp_path)
    torch.save({"version": 1, "model": {"trunk.0.weight": torch.zeros(1)}}, run_dir / "checkpoints" / "best.pt")
    with pytest.raises(RunError, match="does not match"):
        open_run(run_dir)


# ---- 2. --output where no file can be written ----------------------------------------------------
def test_output_under_a_file_is_a_config_error(cli_results):
    assert_clean_user_error(cli_results["output_under_a_file"], "a_file is a file, not a folder", "--output")


def test_output_that_is_a_directory_or_under_a_file_is_a_config_error_leaving_nothing_behind(runs, tmp_path):
    (tmp_path / "blocker").write_text("")
    with pytest.raises(ConfigError, match="blocker is a file, not a folder.*--output"):
        evaluate(runs["finished"].run_dir, output=tmp_path / "blocker" / "eval.json")
    with pytest.raises(ConfigError, match="Is a directory.*--output"):
        evaluate(runs["finished"].run_dir, output=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


# ---- 3. --runs-dir where no directory can be made ------------------------------------------------
def test_runs_dir_on_a_virtual_file_system_is_a_run_error(tmp_path):
    with pytest.raises(RunError, match="--runs-dir /proc/dlrun-no-such-dir is not a writable directory"):
        create_run_dir(Path("/proc/dlrun-no-such-dir"), "x")


# ---- 4. --device spelled wrong -------------------------------------------------------------------
@pytest.mark.parametrize("name", ["gpu", "mps", "cuda:x"])
def test_misspelled_device_has_the_configs_wording(name):
    with pytest.raises(ConfigError) as from_device:
        resolve_device(name)
    with pytest.raises(ConfigError) as from_config:
        validate_config({**TINY, "device": name})
    assert str(from_device.value) == f"device: must be auto, cpu, cuda or cuda:N, got {name!r}"
    assert str(from_device.value) in str(from_config.value)


def test_predict_with_device_gpu_is_a_clean_error(cli_results):
    assert_clean_user_error(cli_results["device_gpu"], "device: must be auto, cpu, cuda or cuda:N, got 'gpu'")


# ---- 5. models too large for memory --------------------------------------------------------------
@pytest.mark.parametrize("hidden, message", [([100_000_000], "between 1 and 65536"), ([4] * 65, "at most 64 hidden layers")])
def test_absurd_hidden_sizes_are_config_errors(hidden, message):
    with pytest.raises(ConfigError, match=message):
        validate_config({**TINY, "model": {"hidden": hidden}})
    validate_config({**TINY, "model": {"hidden": [65_536] + [1] * 63, "dropout": 0.0}})  # the bounds themselves pass


def test_cli_rejects_a_huge_hidden_width_before_creating_a_run(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    result = run_cli("train", config, "--runs-dir", tmp_path / "runs", "--set", "model.hidden=[100000000]")
    assert_clean_user_error(result, "model.hidden")
    assert not (tmp_path / "runs").exists()


CPU_ALLOCATION_FAILURE = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
                          "you tried to allocate 25600000000 bytes. Error code 12 (Cannot allocate memory)")


def test_running_out_of_memory_while_training_fails_the_run_with_a_clear_error(tmp_path, monkeypatch):
    def fit(*args, **kwargs):
        raise RuntimeError(CPU_ALLOCATION_FAILURE)

    monkeypatch.setattr(runner, "fit", fit)
    with pytest.raises(ConfigError, match="ran out of CPU memory .* use a smaller model or batch"):
        train(validate_config(TINY), tmp_path)
    (run_dir,) = tmp_path.iterdir()
    info = read_record(run_dir).as_json()
    assert info["status"] == "failed" and "ran out of CPU memory" in info["error"]


def test_running_out_of_memory_building_the_model_creates_no_run(tmp_path, monkeypatch):
    def build_model(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(runner, "build_model", build_model)
    with pytest.raises(ConfigError, match="ran out of CPU memory"):
        train(validate_config(TINY), tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
                                   RuntimeError(CPU_ALLOCATION_FAILURE)])
def test_memory_errors_become_config_errors(error):
    cfg = validate_config(TINY)
    with pytest.raises(ConfigError, match="model.hidden"):
        with out_of_memory_explained(cfg, torch.device("cuda")):
            raise error


def test_other_runtime_errors_are_not_called_memory_errors():
    with pytest.raises(RuntimeError, match="shape mismatch"):
        with out_of_memory_explained(validate_config(TINY), torch.device("cpu")):
            raise RuntimeError("shape mismatch")


# ---- 6. resuming a damaged run -------------------------------------------------------------------
@pytest.mark.parametrize("text", ['{"status": "fail', "[1, 2]"])
def test_resume_with_damaged_run_json_is_a_run_error(runs, tmp_path, text):
    run_dir = copy_run(runs["interrupted"], tmp_path)
    (run_dir / "run.json").write_text(text)
    with pytest.raises(RunError, match="run.json is damaged"):
        resume(run_dir)


def test_resume_from_a_last_checkpoint_without_training_state_is_a_run_error(runs, tmp_path):
    run_dir = copy_run(runs["interrupted"], tmp_path)
    torch.save({"version": 1, "model": {}}, run_dir / "checkpoints" / "last.pt")
    with pytest.raises(RunError, match="no training state"):
        resume(run_dir)
    torch.save({"model": {}}, run_dir / "checkpoints" / "last.pt")
    with pytest.raises(RunError, match="not a dlrun checkpoint"):
        resume(run_dir)


def test_resume_from_a_last_checkpoint_with_empty_weights_is_a_run_error(runs, tmp_path):
    run_dir = copy_run(runs["interrupted"], tmp_path)
    last = run_dir / "checkpoints" / "last.pt"
    checkpoint = torch.load(last, weights_only=True)
    torch.save({**checkpoint, "model": {}}, last)
    with pytest.raises(RunError, match="last.pt does not match"):
        resume(run_dir)
    assert read_record(run_dir).as_json()["status"] == "interrupted"  # untouched: training never restarted


# ---- 7. loss weights -----------------------------------------------------------------------------
@pytest.mark.parametrize("weight", [-1, 0])
def test_loss_weight_must_be_positive(weight):
    with pytest.raises(ConfigError, match="train.loss_weight.wages: Input should be greater than 0"):
        validate_config({"data": {"dataset": "salary"}, "train": {"loss_weight": {"wages": weight}}})


# ---- 8. scoring an unfinished run ----------------------------------------------------------------
def test_evaluation_and_prediction_carry_an_unfinished_runs_status(runs, tmp_path):
    result = evaluate(runs["interrupted"], output=tmp_path / "eval.json")
    assert result.run_status == "interrupted" and result.checkpoint_epoch == 1
    assert evaluate(runs["finished"].run_dir, output=tmp_path / "eval2.json").run_status == "completed"


@pytest.mark.parametrize("command", ["eval_interrupted", "predict_interrupted"])
def test_cli_warns_before_scoring_an_unfinished_run(cli_results, runs, command):
    result = cli_results[command]
    assert result.returncode == 0, result.stderr
    assert (f"warning: {runs['interrupted']} did not complete (status: interrupted); "
            "scoring its best checkpoint so far (epoch 1)") in result.stderr


def test_a_run_still_marked_running_is_reported_as_running(runs, tmp_path):
    run_dir = copy_run(runs["interrupted"], tmp_path)
    info = read_record(run_dir).as_json()
    (run_dir / "run.json").write_text(json.dumps({**info, "status": "running", "error": None}))
    assert open_run(run_dir).run_status == "running"


# ---- 9. prediction columns never duplicate input columns -----------------------------------------
def test_with_predictions_drops_input_columns_that_predictions_replace():
    rows = pd.DataFrame({"x": [1, 2], "y_pred": [7, 8]}, index=[5, 9])
    merged = with_predictions(rows, pd.DataFrame({"y_pred": [0.5, 0.6]}))
    assert list(merged.columns) == ["x", "y_pred"] and merged["y_pred"].tolist() == [0.5, 0.6]


def test_feature_named_like_a_prediction_column_never_duplicates_it(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=40), "y_pred": rng.normal(size=40)})
    frame["y"] = 3 * frame["x"] + 1000  # far from y_pred: a mixed-up column would show
    frame.to_csv(tmp_path / "rows.csv", index=False)
    run = train(validate_config({**TINY, "data": {"path": str(tmp_path / "rows.csv"), "target": "y"}}), tmp_path / "runs")
    saved = pd.read_csv(run.run_dir / "predictions.csv")
    assert list(saved.columns) == ["x", "y", "y_pred"]
    output = predict(run.run_dir, tmp_path / "rows.csv", tmp_path / "out.csv").output
    predicted = pd.read_csv(output)
    assert list(predicted.columns) == ["x", "y", "y_pred"]
    assert not np.allclose(predicted["y_pred"], frame["y_pred"])


# ---- 10. config error messages -------------------------------------------------------------------
def problems(raw: dict) -> list[str]:
    with pytest.raises(ConfigError) as error:
        validate_config(raw)
    return str(error.value).splitlines()[1:]


def test_a_union_value_out_of_range_gets_one_line_naming_the_constraint():
    assert problems({**TINY, "model": {"dropout": 1}}) == ["  model.dropout: Input should be less than 1 (got 1)"]


def test_union_branch_tags_never_appear_in_key_paths():
    assert problems({**TINY, "model": {"hidden": [8, 8], "dropout": [0.5, 2]}}) == [
        "  model.dropout.1: Input should be less than 1 (got 2)"]
    assert problems({**TINY, "data": {"dataset": "synthetic", "task": {"label": "clasification"}}}) == [
        "  data.task.label: Input should be 'classification' or 'regression' (got 'clasification')"]


def test_a_value_of_the_wrong_type_for_every_branch_names_what_each_accepts():
    assert problems({**TINY, "data": {"dataset": "synthetic", "target": 5}}) == [
        "  data.target: Input should be a valid string or a valid list (got 5)"]


def test_a_message_that_names_the_value_does_not_repeat_it():
    assert problems({**TINY, "device": "gpu"}) == ["  device: must be auto, cpu, cuda or cuda:N, got 'gpu'"]


@pytest.mark.parametrize("override", [".seed=1", "a..b=1", "model.=1"])
def test_set_with_an_empty_key_is_a_config_error(tmp_path, override):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(TINY))
    key = override.partition("=")[0]
    with pytest.raises(ConfigError, match=f"--set: empty key in '{key}'"):
        load_config(config, [override])


# ---- 11. the train summary and an empty data.path ------------------------------------------------
def test_a_run_that_used_every_epoch_says_so(runs):
    assert runs["finished"].stop_reason == "ran all 2 epochs"
    assert read_record(runs["finished"].run_dir).as_json()["stop_reason"] == "ran all 2 epochs"


def test_cli_summary_of_a_run_that_used_every_epoch(cli_results):
    result = cli_results["train_all_epochs"]
    assert result.returncode == 0, result.stderr
    assert "best epoch 2 by val_loss. ran all 2 epochs" in result.stderr


@pytest.mark.parametrize("path", ["", "  "])
def test_empty_data_path_is_a_config_error(path):
    assert problems({**TINY, "data": {"path": path, "target": "y"}}) == [f"  data.path: must be the path of a CSV file, got {path!r}"]

"""Resuming an interrupted run continues it exactly: same metrics as a run that never stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import yaml

from dlrun.config.load import validate_config
from dlrun.core.errors import RunError
from dlrun.run.runner import resume, train

from conftest import InterruptAfter, run_cli

# Dropout, a plateau schedule and shuffling all draw random numbers or keep state a resume must restore.
CONFIG = {
    "seed": 3, "device": "cpu",
    "data": {"dataset": "synthetic", "synthetic": {"n_samples": 300}, "batch_size": 32},
    "model": {"hidden": [16, 8], "dropout": 0.2},
    "scheduler": {"name": "plateau", "patience": 1},
    "train": {"epochs": 8, "early_stopping": {"patience": 3}},
}



def _metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


def test_resumed_run_ends_with_the_same_metrics_as_an_uninterrupted_one(tmp_path):
    straight = train(validate_config(CONFIG), tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        train(validate_config(CONFIG), tmp_path / "b", callbacks=[InterruptAfter(4)])
    (run_dir,) = (tmp_path / "b").iterdir()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"
    resumed = resume(run_dir)
    assert resumed.run_dir == run_dir
    assert _metrics(run_dir) == _metrics(straight.run_dir)
    assert resumed.epochs_run == straight.epochs_run and resumed.best_epoch == straight.best_epoch
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "completed" and info["resumed"][0]["after_epoch"] == 4
    assert (run_dir / "metrics.csv").read_text().count("\n") == straight.epochs_run + 1


def test_a_completed_run_cannot_be_resumed(tmp_path):
    run = train(validate_config({**CONFIG, "train": {"epochs": 2}}), tmp_path)
    with pytest.raises(RunError, match="already completed"):
        resume(run.run_dir)


def test_a_killed_cli_run_resumes_to_the_same_metrics(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "train": {"epochs": 8, "early_stopping": None}}))
    # SIGKILL just before the 5th metrics.csv write: epoch 5 is trained but nothing of it saved; last.pt holds epoch 4.
    kill = {**os.environ, "DLRUN_TEST_KILL_AT": "metrics.csv:before:5"}
    command = [sys.executable, "-m", "dlrun", "train", str(config), "--runs-dir"]
    # The uninterrupted twin runs alongside: each process spends seconds importing torch.
    straight = subprocess.Popen([*command, str(tmp_path / "a")], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    killed = subprocess.run([*command, str(tmp_path / "b")], cwd=tmp_path, env=kill, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (run_dir,) = (tmp_path / "b").iterdir()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"  # killed: nobody could mark it
    assert (run_dir / "metrics.csv").read_text().count("\n") == 1 + 4

    resumed = run_cli("train", "--resume", str(run_dir), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip().splitlines()[-1] == str(run_dir)
    assert json.loads((run_dir / "run.json").read_text())["resumed"][0]["after_epoch"] == 4
    straight_out, _ = straight.communicate(timeout=300)
    assert straight.returncode == 0
    straight_dir = tmp_path / straight_out.strip().splitlines()[-1]  # absolute: `/` keeps it as it is
    assert _metrics(run_dir) == _metrics(straight_dir)


def test_resume_needs_a_run_directory(tmp_path):
    result = run_cli("train", "--resume", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2 and "Error:" in result.stderr and "Traceback" not in result.stderr


# ---- kills at an exact write (issue 14 items 2 and 3), then --resume ------------------------------------------------
# Early stopping after epoch 7 with epoch 5 the best: the last improvement is two epochs before the stop.
STOPPING = {**CONFIG, "report": False, "optimizer": {"lr": 0.05},
            "train": {"epochs": 30, "early_stopping": {"patience": 2}}}
# A test-only kill, run in a child process: SIGKILL at one exact write, so nothing (no `finally`) runs after it.
KILL_SCRIPT = """
import json, os, signal, sys
import dlrun.run.runner as runner
import dlrun.training.callbacks as callbacks
from dlrun.config.load import validate_config

where, epoch = sys.argv[3], int(sys.argv[4])
save = callbacks.save_checkpoint
def killing_save(path, state, include_optimizer, durable=True):
    # "best": after last.pt of an improving epoch, before its best.pt; "first": before anything of epoch 1 is saved
    if (where == "best" and not include_optimizer and state.epoch == epoch) or where == "first":
        os.kill(os.getpid(), signal.SIGKILL)
    save(path, state, include_optimizer, durable)
def killing_results(*args, **kwargs):  # "results": training ended (stopped early), nothing of its results written yet
    os.kill(os.getpid(), signal.SIGKILL)
callbacks.save_checkpoint = killing_save
if where == "results":
    runner.write_results = killing_results
runner.train(validate_config(json.loads(sys.argv[1])), sys.argv[2])
"""


def _kill(config: dict, runs, where: str, epoch: int = 0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, json.dumps(config), str(runs), where, str(epoch)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """The straight run, and one run killed at each point, all started at once (each child spends seconds importing)."""
    root = tmp_path_factory.mktemp("killed")
    straight = train(validate_config(STOPPING), root / "straight")
    assert straight.stop_reason.startswith("early stopping") and 1 < straight.best_epoch < straight.epochs_run
    children = {"best": _kill(STOPPING, root / "best", "best", straight.best_epoch),
                "results": _kill(STOPPING, root / "results", "results"),
                "first": _kill(STOPPING, root / "first", "first")}
    for name, child in children.items():
        _, stderr = child.communicate(timeout=300)
        assert child.returncode == -signal.SIGKILL, f"{name}: exit {child.returncode}\n{stderr}"
    return straight, {name: next((root / name).iterdir()) for name in children}


def _weights(path):
    import torch

    return torch.load(path, weights_only=True)["model"]


def _assert_same_run(run_dir, straight_dir):
    import torch

    import pandas as pd

    assert _metrics(run_dir) == _metrics(straight_dir)
    for name in ("metrics.csv", "diagnostics.csv"):  # wall time differs run to run; every other value must not
        ours, theirs = (pd.read_csv(d / name).drop(columns=["seconds"], errors="ignore") for d in (run_dir, straight_dir))
        pd.testing.assert_frame_equal(ours, theirs, check_exact=True)
    mine, straight = _weights(run_dir / "checkpoints" / "best.pt"), _weights(straight_dir / "checkpoints" / "best.pt")
    assert mine.keys() == straight.keys() and all(torch.equal(mine[k], straight[k]) for k in mine)


def test_a_kill_between_the_last_and_best_checkpoint_writes_resumes_to_the_straight_runs_model(killed):
    import torch

    straight, runs = killed
    run_dir = runs["best"]
    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    best = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    assert last["best_epoch"] == straight.best_epoch and best["epoch"] < straight.best_epoch  # the two disagree
    resumed = resume(run_dir)
    assert resumed.best_epoch == straight.best_epoch and resumed.epochs_run == straight.epochs_run
    _assert_same_run(run_dir, straight.run_dir)
    assert torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)["epoch"] == straight.best_epoch


def test_a_run_killed_after_deciding_to_stop_resumes_without_an_extra_epoch(killed):
    straight, runs = killed
    run_dir = runs["results"]
    assert not (run_dir / "metrics.json").exists()
    resumed = resume(run_dir)
    assert resumed.epochs_run == straight.epochs_run and resumed.stop_reason == straight.stop_reason
    _assert_same_run(run_dir, straight.run_dir)
    assert json.loads((run_dir / "run.json").read_text())["resumed"][0]["after_epoch"] == straight.epochs_run


def test_a_run_killed_before_its_first_epoch_ended_resumes_from_the_first_epoch(killed):
    straight, runs = killed
    run_dir = runs["first"]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    assert not (run_dir / "checkpoints" / "last.pt").exists()
    result = run_cli("train", "--resume", str(run_dir))
    assert result.returncode == 0, result.stderr
    _assert_same_run(run_dir, straight.run_dir)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "completed" and info["resumed"][0]["after_epoch"] == 0


def test_a_second_resume_of_a_run_being_trained_refuses_naming_the_holder(killed):
    import socket

    from dlrun.run.lock import hold_run_lock

    _, runs = killed
    run_dir = runs["first"]
    with hold_run_lock(run_dir):  # as a training process holds it
        result = run_cli("train", "--resume", str(run_dir))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"already being trained by pid {os.getpid()} on host {socket.gethostname()}" in result.stderr
    assert not (run_dir / "run.lock").exists()  # the holder removes it when it ends

"""Resuming an interrupted run continues it exactly: same metrics as a run that never stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import yaml

from dlrun.config.schema import validate_config
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
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"
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

"""Ctrl-C and SIGTERM through the real CLI: the run stops after the current epoch with last.pt saved, run.json says
`interrupted`, the exact resume command is printed, and resuming ends where a straight run ends. The signals come from
the test-only hook in core/faults.py (sent by the process to itself at an exact file write): no timing."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch
import yaml

from dlrun.run.listing import read_run_row
from dlrun.run.lock import hold_run_lock
from dlrun.run.record import RunRecord

from conftest import REPO

# Dropout, a plateau schedule and shuffling all draw random numbers or keep state a resume must restore.
CONFIG = {
    "seed": 3, "device": "cpu", "report": False,
    "data": {"dataset": "synthetic", "synthetic": {"n_samples": 300}, "batch_size": 32},
    "model": {"hidden": [16, 8], "dropout": 0.2},
    "scheduler": {"name": "plateau", "patience": 1},
    "train": {"epochs": 5},
}


def dlrun(*args, cwd: Path, signal_at: str | None = None) -> subprocess.CompletedProcess:
    """`python -m dlrun ARGS`; with signal_at (FILE:after:N:SIGNAL) the process signals itself at that write."""
    # Run in tmp_path (relative run directories, as a user sees them), importing this checkout's dlrun.
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    if signal_at:
        env["DLRUN_TEST_KILL_AT"] = signal_at
    return subprocess.run([sys.executable, "-m", "dlrun", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def write_config(tmp_path: Path, epochs: int) -> Path:
    path = tmp_path / f"c{epochs}.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "name": "c", "train": {"epochs": epochs}}))
    return path


def history(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "metrics.csv").drop(columns="seconds")


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def straight_run(tmp_path: Path, epochs: int) -> Path:
    result = dlrun("train", write_config(tmp_path, epochs), "--runs-dir", "straight", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return tmp_path / result.stdout.strip().splitlines()[-1]


def test_sigterm_stops_after_the_epoch_and_the_printed_command_resumes_to_the_straight_result(tmp_path):
    straight = straight_run(tmp_path, 5)
    # SIGTERM right after epoch 2's metrics.csv write: epoch 2 still finishes (its last.pt), epoch 3 never starts.
    stopped = dlrun("train", write_config(tmp_path, 5), cwd=tmp_path, signal_at="metrics.csv:after:2:SIGTERM")
    assert stopped.returncode == 130, stopped.stderr
    run_dir = tmp_path / stopped.stdout.strip().splitlines()[-1]
    assert f"Run directory: {run_dir.relative_to(tmp_path)}" in stopped.stderr
    command = next(line for line in stopped.stderr.splitlines() if line.startswith("Resume with: "))
    assert command == f"Resume with: dlrun train --resume {shlex.quote(str(run_dir.relative_to(tmp_path)))}"
    assert "Traceback" not in stopped.stderr
    info = record(run_dir)
    assert info["status"] == "interrupted" and info["error"] == "SIGTERM after epoch 2" and info["epochs_run"] == 2
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 2
    assert len(history(run_dir)) == 2 and not (run_dir / "metrics.json").exists()
    assert read_run_row(run_dir).status == "interrupted"

    resumed = dlrun(*shlex.split(command.removeprefix("Resume with: dlrun ")), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert record(run_dir)["status"] == "completed" and record(run_dir)["resumed"][0]["after_epoch"] == 2
    pd.testing.assert_frame_equal(history(run_dir), history(straight))
    assert json.loads((run_dir / "metrics.json").read_text()) == json.loads((straight / "metrics.json").read_text())


def test_ctrl_c_marks_the_run_interrupted_and_dlrun_runs_lists_it(tmp_path):
    stopped = dlrun("train", write_config(tmp_path, 5), cwd=tmp_path, signal_at="metrics.csv:after:1:SIGINT")
    assert stopped.returncode == 130, stopped.stderr
    run_dir = tmp_path / stopped.stdout.strip().splitlines()[-1]
    assert record(run_dir)["status"] == "interrupted" and len(history(run_dir)) == 1
    assert "Interrupted (SIGINT) after epoch 1; checkpoints/last.pt saved" in stopped.stderr
    listed = dlrun("runs", "runs", "--json", cwd=tmp_path)
    assert listed.returncode == 0 and [row["status"] for row in json.loads(listed.stdout)] == ["interrupted"]


def test_more_epochs_extend_a_completed_run_as_if_it_had_run_them_straight(tmp_path):
    straight = straight_run(tmp_path, 5)
    first = dlrun("train", write_config(tmp_path, 3), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    run_dir = tmp_path / first.stdout.strip().splitlines()[-1]
    extended = dlrun("train", "--resume", run_dir, "--set", "train.epochs=5", cwd=tmp_path)
    assert extended.returncode == 0, extended.stderr
    info = record(run_dir)
    assert info["status"] == "completed" and info["epochs_run"] == 5 and info["resumed"][0]["after_epoch"] == 3
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["epochs"] == 5
    pd.testing.assert_frame_equal(history(run_dir), history(straight))
    assert json.loads((run_dir / "metrics.json").read_text()) == json.loads((straight / "metrics.json").read_text())

    fewer = dlrun("train", "--resume", run_dir, "--set", "train.epochs=5", cwd=tmp_path)
    assert fewer.returncode == 2 and "already trained 5 epochs" in fewer.stderr
    again = dlrun("train", "--resume", run_dir, cwd=tmp_path)
    assert again.returncode == 2 and "--set train.epochs=N" in again.stderr


def test_resume_refuses_every_other_set_key_naming_it(tmp_path):
    config = write_config(tmp_path, 3)
    first = dlrun("train", config, cwd=tmp_path, signal_at="metrics.csv:after:1:SIGTERM")
    run_dir = tmp_path / first.stdout.strip().splitlines()[-1]
    before = (run_dir / "config.yaml").read_text()
    refused = dlrun("train", "--resume", run_dir, "--set", "train.epochs=6", "--set", "optimizer.lr=0.5", cwd=tmp_path)
    assert refused.returncode == 2
    assert "optimizer.lr" in refused.stderr and "only --set train.epochs=N" in refused.stderr
    assert (run_dir / "config.yaml").read_text() == before and record(run_dir)["status"] == "interrupted"


def test_a_running_run_whose_process_is_gone_is_listed_as_lost(tmp_path):
    # SIGKILL (no handler can run): run.json stays `running`, but the kernel dropped the run's lock with the process.
    killed = dlrun("train", write_config(tmp_path, 5), cwd=tmp_path, signal_at="metrics.csv:after:2:SIGKILL")
    assert killed.returncode == -9
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert record(run_dir)["status"] == "running"
    assert read_run_row(run_dir).status == "lost"
    with hold_run_lock(run_dir):  # a live trainer holds the lock: the same record reads as running
        assert read_run_row(run_dir).status == "running"
    listed = dlrun("runs", "runs", "--json", cwd=tmp_path)
    assert listed.returncode == 0 and [row["status"] for row in json.loads(listed.stdout)] == ["lost"]


def test_old_runs_interrupted_as_failed_are_still_read():
    old = RunRecord.model_validate({"status": "failed", "error": "interrupted"})
    assert old.status_text == "failed: interrupted"
    assert RunRecord.model_validate({"status": "interrupted"}).status_text == "interrupted"

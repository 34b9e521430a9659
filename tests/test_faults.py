"""Fault injection: SIGKILL a training run just before or just after it replaces one of its files, then
`dlrun train --resume RUN`; the resumed run must end with the straight run's metrics.json, metrics.csv and best.pt.

The kill comes from the test-only hook in dlrun/core/faults.py (DLRUN_TEST_KILL_AT=FILE:before|after:N), so each case
dies at one exact write, with no timing involved. The run is small but exercises what a resume must restore: dropout
(random state), improving epochs, a plateau epoch followed by a new best, and early stopping.

Each case is two processes (the killed run, the resume), forked from a server that imported the CLI once
(fault_helpers.py): a fresh `python -m dlrun` spends seconds importing torch before its first epoch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from conftest import REPO
from fault_helpers import run_dlrun

# lr 0.1 on 120 rows: val_loss improves in epochs 1-5, not in 6, improves again in 7 (best.pt's 6th write), then
# stalls in 8 and 9, and patience 2 stops the run after epoch 9 (tests below check this trajectory).
CONFIG = {
    "name": "faults", "seed": 3, "device": "cpu", "report": False,
    "data": {"dataset": "synthetic", "synthetic": {"n_samples": 120}, "batch_size": 32},
    "model": {"hidden": [8], "dropout": 0.2},
    "optimizer": {"lr": 0.1},
    "train": {"epochs": 12, "early_stopping": {"patience": 2}},
}
EPOCHS_RUN, BEST_EPOCH = 9, 7


# A run killed before its first file (config.yaml) is written has nothing to resume from: resuming says so.
NOTHING_SAVED = "nothing saved"

# (file, which replacement of it, the moment, marks). Every file a straight run writes is here (checked below); the
# replacement chosen is the one that matters: the first for files written once, one in mid-training (epoch 4, or
# epoch 7: a new best after a plateau) and the final one for the per-epoch files, the 'completed' record for run.json.
CASES = [
    ("config.yaml", 1, "before", NOTHING_SAVED),
    ("config.yaml", 1, "after", None),
    ("preprocess.json", 1, "before", None),
    ("preprocess.json", 1, "after", None),
    ("run.json", 1, "before", None),  # the 'running' record
    ("run.json", 1, "after", None),
    ("metrics.csv", 4, "before", None),
    ("metrics.csv", 4, "after", None),
    ("diagnostics.csv", 4, "before", None),
    ("diagnostics.csv", 4, "after", None),
    ("last.pt", 7, "before", None),  # epoch 7: its metrics.csv row is written, its checkpoints not
    ("last.pt", 7, "after", None),  # last.pt says best epoch 7, best.pt still holds epoch 5
    ("best.pt", 6, "before", None),  # the same moment, seen from best.pt's side
    ("best.pt", 6, "after", None),
    ("last.pt", EPOCHS_RUN, "before", None),  # the epoch that triggers early stopping
    ("last.pt", EPOCHS_RUN, "after", None),
    ("metrics.json", 1, "before", None),
    ("metrics.json", 1, "after", None),
    ("confusion_label.csv", 1, "before", None),
    ("confusion_label.csv", 1, "after", None),
    ("predictions.csv", 1, "before", None),
    ("predictions.csv", 1, "after", None),
    ("run.json", 2, "before", None),  # the 'completed' record
    ("run.json", 2, "after", None),  # completed: there is nothing left to resume
]


def _case_id(case) -> str:
    name, n, moment, _ = case
    return f"{moment}-{name}-{n}"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faults")
    (root / "faults.yaml").write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    return root


@pytest.fixture(scope="module")
def straight(workdir) -> Path:
    """The run that was never interrupted, made by the same CLI."""
    result = run_dlrun(["train", workdir / "faults.yaml", "--runs-dir", workdir / "straight"], workdir / "logs" / "straight")
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip().splitlines()[-1])


def _history(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "metrics.csv").drop(columns="seconds")  # wall time differs between any two runs


def _best_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)["model"]


def _files(run_dir: Path) -> set[str]:
    return {path.name for path in run_dir.rglob("*") if path.is_file() and not path.name.startswith(".")}


# ---- the hook itself -----------------------------------------------------------------------------
def _write_five_times(tmp_path: Path, kill_at: str) -> subprocess.CompletedProcess:
    """A process that writes a.txt (with its write number) and b.txt five times each, printing after each write."""
    script = ("from dlrun.core.io import write_text\n"
              "for i in range(1, 6):\n"
              f"    write_text({str(tmp_path / 'a.txt')!r}, str(i)); write_text({str(tmp_path / 'b.txt')!r}, str(i))\n"
              "    print(i, flush=True)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "DLRUN_TEST_KILL_AT": kill_at}
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("moment, left", [("before", "2"), ("after", "3")])
def test_the_hook_kills_at_the_named_replacement_of_the_named_file(tmp_path, moment, left):
    result = _write_five_times(tmp_path, f"a.txt:{moment}:3")
    assert result.returncode == -9 and result.stdout.split() == ["1", "2"]
    assert (tmp_path / "a.txt").read_text() == left and (tmp_path / "b.txt").read_text() == "2"


def test_a_malformed_kill_point_is_refused_not_ignored(tmp_path):
    result = _write_five_times(tmp_path, "a.txt:during:3")
    assert result.returncode == 1 and "DLRUN_TEST_KILL_AT='a.txt:during:3'" in result.stderr


# ---- kill and resume --------------------------------------------------------------------------------
def test_the_straight_run_stops_early_after_a_plateau_and_a_new_best(straight):
    """The trajectory the cases rely on: if it changes, the chosen writes no longer hit the moments they name."""
    info = json.loads((straight / "run.json").read_text())
    assert info["status"] == "completed"
    assert (info["epochs_run"], info["best_epoch"]) == (EPOCHS_RUN, BEST_EPOCH)
    assert info["stop_reason"].startswith("early stopping: val_loss has not improved for 2 epochs")
    val_loss = _history(straight)["val_loss"].tolist()
    assert val_loss[5] > min(val_loss[:5]) > val_loss[6]  # epoch 6 stalls, epoch 7 is a new best


def test_every_file_a_run_writes_has_its_kill_cases(straight):
    covered = {name for name, *_ in CASES}
    assert _files(straight) == covered


@pytest.mark.parametrize("case", [pytest.param(c, id=_case_id(c)) for c in CASES])
def test_a_run_killed_at_a_write_resumes_to_the_straight_result(workdir, straight, case):
    name, n, moment, expected = case
    label = _case_id(case)
    runs = workdir / label
    killed = run_dlrun(["train", workdir / "faults.yaml", "--runs-dir", runs], workdir / "logs" / label,
                       env={"DLRUN_TEST_KILL_AT": f"{name}:{moment}:{n}"})
    assert killed.returncode == -9, f"not killed at {name} {moment} #{n}: exit {killed.returncode}\n{killed.stderr[-2000:]}"
    (run_dir,) = runs.iterdir()

    resumed = run_dlrun(["train", "--resume", run_dir], workdir / "logs" / f"{label}-resume")
    if expected == NOTHING_SAVED:
        assert resumed.returncode == 2 and "start it again with dlrun train" in resumed.stderr, resumed.stderr[-2000:]
        assert "Traceback" not in resumed.stderr
        return
    if "already completed" in resumed.stderr:
        assert resumed.returncode == 2  # killed after the run was recorded complete: nothing to resume
    else:
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert resumed.stdout.strip().splitlines()[-1] == str(run_dir)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"
    assert json.loads((run_dir / "metrics.json").read_text()) == json.loads((straight / "metrics.json").read_text())
    pd.testing.assert_frame_equal(_history(run_dir), _history(straight))
    best, expected = _best_weights(run_dir), _best_weights(straight)
    assert best.keys() == expected.keys()
    assert all(torch.equal(best[key], expected[key]) for key in best), "best.pt holds other weights than the straight run's"

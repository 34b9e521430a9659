"""Data-parallel training rows per second: one process against N processes (`dlrun train --nproc N`, torchrun) on CPU.

    nice -n 19 python bench/ddp.py [--rows 200000] [--epochs 3] [--batch-size 512] [--hidden 256 128] [--nproc 1 2]

A seeded regression table (--rows rows x 16 numeric features, target a noisy nonlinear function of them) is written
to a temporary CSV and trained with the same config by each process count: the same global batch (`data.batch_size`,
split evenly over the processes), the default MLP widths given by --hidden, no early stopping, the fast step.
Rows per second = training rows x epochs / run.json's `seconds.train` (the training loop itself: validation each
epoch included, start-up, data loading and writing results excluded); wall seconds are the whole command. Each process
runs one CPU thread (torchrun's default), so N processes use N cores: the speed-up is bounded by the free cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parent.parent


def make_table(path: Path, n_rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, 16)).astype(np.float32)
    y = np.sin(X[:, 0]) * 3 + X[:, 1] * X[:, 2] + np.abs(X[:, 3]) + rng.normal(0, 0.1, n_rows)
    frame = pd.DataFrame(X.round(4), columns=[f"x{i}" for i in range(16)])
    frame["y"] = y.round(4)
    frame.to_csv(path, index=False)


def train(config: Path, runs: Path, nproc: int) -> dict:
    """One `dlrun train`; its rows per second and wall time."""
    command = [sys.executable, "-m", "dlrun", "train", str(config), "--runs-dir", str(runs)]
    if nproc > 1:
        command += ["--nproc", str(nproc)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"dlrun train --nproc {nproc} failed:\n{result.stderr[-2000:]}")
    record = json.loads((Path(result.stdout.strip().splitlines()[-1]) / "run.json").read_text())
    rows = record["data"]["rows"]["train"] * record["epochs_run"]
    return {"nproc": nproc, "rows_per_s": rows / record["seconds"]["train"], "train_s": record["seconds"]["train"],
            "wall_s": wall, "world_size": record["world_size"], "test": record.get("best_value")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 128])
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_table(tmp / "table.csv", args.rows)
        config = tmp / "bench.yaml"
        config.write_text(yaml.safe_dump({
            "name": "ddp-bench", "seed": 0, "device": "cpu", "report": False,
            "data": {"path": str(tmp / "table.csv"), "target": "y", "batch_size": args.batch_size},
            "model": {"hidden": args.hidden, "dropout": 0.0},
            "train": {"epochs": args.epochs, "early_stopping": None, "threads": 1},
        }))
        print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
              f"{args.rows:,} rows x 16 features, MLP {args.hidden}, global batch {args.batch_size}, {args.epochs} epochs")
        print(f"{'processes':>9}  {'rows/s':>10}  {'train s':>8}  {'wall s':>7}  {'val_loss':>9}")
        baseline = None
        for nproc in args.nproc:
            result = train(config, tmp / f"runs{nproc}", nproc)
            baseline = baseline or result["rows_per_s"]
            print(f"{nproc:>9}  {result['rows_per_s']:>10,.0f}  {result['train_s']:>8.2f}  {result['wall_s']:>7.1f}  "
                  f"{result['test']:>9.4f}   x{result['rows_per_s'] / baseline:.2f}")


if __name__ == "__main__":
    main()

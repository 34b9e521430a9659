"""How much memory does dlrun need? Peak resident memory of `dlrun train`, `predict` and `eval` on a big CSV.

    python bench/memory.py [--rows N] [--columns N] [--keep DIR]

The task (issue 14, memory): a 1,000,000-row x 20-column CSV (19 numeric features and a numeric target, seeded),
trained for one epoch (batch 4096, the default model) and then scored by `dlrun predict` and `dlrun eval --data` on
the same file. Each command runs in its own subprocess; its peak resident set size (ru_maxrss of the child, which
includes the ~400 MB that importing torch costs) is read with resource.getrusage(RUSAGE_CHILDREN), one fresh
Python process per command so the peaks do not mix. predict and eval read and score the CSV in chunks
(dlrun.inference.batch.CHUNK_ROWS rows at a time), so their peak does not grow with the file; training holds every
split as tensors (fast by construction, see STYLE.md rule 10), so its peak does.

Measured on the development machine (2 shared cores, CPU), 1,000,000 x 20, CSV 141 MB, peak RSS:
    train (1 epoch, batch 4096)   971 MB   (every split held as tensors: grows with the rows)
    predict                       950 MB read whole  ->  521 MB in chunks   (output byte-identical)
    eval --data                 1,008 MB read whole  ->  490 MB in chunks   (eval.json identical but for the time)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent


def make_csv(path: Path, n_rows: int, n_columns: int, seed: int = 0) -> None:
    """n_columns - 1 numeric features and a target `y` that depends on the first three, written in slices."""
    rng = np.random.default_rng(seed)
    slice_rows = 100_000
    for start in range(0, n_rows, slice_rows):
        n = min(slice_rows, n_rows - start)
        X = rng.standard_normal((n, n_columns - 1)).round(4)  # (n, n_columns - 1)
        frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(n_columns - 1)])
        frame["y"] = (3 * X[:, 0] - 2 * X[:, 1] + X[:, 2] ** 2 + 0.1 * rng.standard_normal(n)).round(4)
        frame.to_csv(path, mode="w" if start == 0 else "a", header=start == 0, index=False)


def peak_of(args: list[str], cwd: Path) -> tuple[float, float, str]:
    """(peak RSS in MB, seconds, last stdout line) of `python -m dlrun ARGS` in a fresh measuring process."""
    probe = ("import resource, subprocess, sys, json, time; t = time.perf_counter(); "
             "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss; "
             "print(json.dumps({'rc': p.returncode, 'kb': kb, 's': time.perf_counter() - t, "
             "'out': p.stdout.strip().splitlines()[-1:] , 'err': p.stderr[-2000:]}))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "dlrun", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, check=True)
    result = json.loads(done.stdout)
    if result["rc"] != 0:
        raise SystemExit(f"dlrun {' '.join(args)} failed:\n{result['err']}")
    return result["kb"] / 1024, result["s"], (result["out"] or [""])[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--columns", type=int, default=20)
    parser.add_argument("--keep", type=Path, help="Work in this folder and keep it (default: a temporary one).")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="dlrun-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    csv = work / "big.csv"
    started = time.perf_counter()
    make_csv(csv, args.rows, args.columns)
    size_mb = csv.stat().st_size / 2**20
    print(f"{args.rows:,} rows x {args.columns} columns: {size_mb:.0f} MB CSV ({time.perf_counter() - started:.0f} s to write)")
    config = work / "big.yaml"
    config.write_text(f"name: memory\ndevice: cpu\nreport: false\ndata: {{path: {csv}, target: y, batch_size: 4096}}\n"
                      "train: {epochs: 1, early_stopping: null}\n")
    rows = []
    peak, seconds, run_dir = peak_of(["train", str(config), "--runs-dir", str(work / "runs")], work)
    rows.append(("train (1 epoch)", peak, seconds))
    peak, seconds, _ = peak_of(["predict", run_dir, str(csv), "--output", str(work / "predictions.csv")], work)
    rows.append(("predict", peak, seconds))
    peak, seconds, _ = peak_of(["eval", run_dir, "--data", str(csv), "--output", str(work / "eval.json")], work)
    rows.append(("eval --data", peak, seconds))
    print(f"{'command':<16} {'peak RSS':>10} {'x CSV':>6} {'seconds':>8}")
    for name, peak, seconds in rows:
        print(f"{name:<16} {peak:>7.0f} MB {peak / size_mb:>6.1f} {seconds:>8.1f}")
    print(f"files in {work}" if args.keep else "")


if __name__ == "__main__":
    main()

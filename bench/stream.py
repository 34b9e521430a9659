"""Streaming a table larger than memory: peak RSS of `dlrun train` (data.in_memory: false) and `dlrun predict` on a
big Parquet table, and rows per second in memory vs streamed on a table that fits both ways.

    nice -n 19 python bench/stream.py [--rows 20000000] [--compare-rows 1000000] [--keep DIR]

The table (issue 19): --rows rows x 20 columns (18 numeric features, a 5-valued text column `city`, a numeric target
`y`), seeded, written to Parquet in 1,000,000-row slices (row groups of 131,072) so generating it needs no more memory
than a slice. Training: one epoch, batch 4096, the default model. Each command runs in its own subprocess and its
peak resident set size (ru_maxrss of the child, including the ~400 MB importing torch costs) is read with
resource.getrusage(RUSAGE_CHILDREN) (bench/memory.py's peak_of). The table lives in a temporary folder, never in
the repository.

rows/s: training rows over run.json's seconds.train (the epoch, with its validation pass), and end to end (the
command's wall time, load and preprocessing and final scoring included), for the same --compare-rows table loaded
in memory and streamed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory import peak_of  # noqa: E402  (bench/memory.py: one fresh measuring process per command)

SLICE_ROWS = 1_000_000
ROW_GROUP_ROWS = 131_072
CITIES = np.array(["Paris", "Lyon", "Nice", "Lille", "Nantes"], dtype=object)


def make_parquet(path: Path, n_rows: int, n_numeric: int = 18, seed: int = 0) -> None:
    """n_numeric numeric features, `city` and a target `y` depending on x0, x1, x2 and the city, slice by slice."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    writer = None
    for start in range(0, n_rows, SLICE_ROWS):
        n = min(SLICE_ROWS, n_rows - start)
        X = rng.standard_normal((n, n_numeric)).astype(np.float32)  # (n, n_numeric)
        city = CITIES[rng.integers(0, len(CITIES), n)]
        y = 3 * X[:, 0] - 2 * X[:, 1] + X[:, 2] ** 2 + (city == "Paris") + 0.1 * rng.standard_normal(n)
        frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(n_numeric)])
        frame["city"] = city
        frame["y"] = y.astype(np.float32)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
    writer.close()


def train(work: Path, table: Path, name: str, in_memory: bool) -> dict:
    config = work / f"{name}.yaml"
    config.write_text(f"name: {name}\ndevice: cpu\nreport: false\n"
                      f"data: {{path: {table}, target: y, batch_size: 4096, in_memory: {str(in_memory).lower()}}}\n"
                      "train: {epochs: 1, early_stopping: null}\n")
    peak, seconds, run_dir = peak_of(["train", str(config), "--runs-dir", str(work / "runs")], work)
    record = json.loads((Path(run_dir) / "run.json").read_text())
    n_train = record["data"]["rows"]["train"]
    return {"run_dir": run_dir, "peak_mb": peak, "seconds": seconds, "train_rows": n_train,
            "train_seconds": record["seconds"]["train"], "stages": record["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20_000_000, help="Rows of the big table (streamed).")
    parser.add_argument("--compare-rows", type=int, default=1_000_000, help="Rows of the table trained both ways (0: skip).")
    parser.add_argument("--keep", type=Path, help="Work in this folder and keep it (default: a temporary one).")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="dlrun-stream-"))
    work.mkdir(parents=True, exist_ok=True)

    if args.compare_rows:
        small = work / "compare.parquet"
        make_parquet(small, args.compare_rows)
        print(f"in memory vs streamed, {args.compare_rows:,} rows x 20 columns, 1 epoch:", flush=True)
        for in_memory in (True, False):
            result = train(work, small, "memory" if in_memory else "stream", in_memory)
            print(f"  {'in memory' if in_memory else 'streamed ':<9}  train {result['train_rows'] / result['train_seconds']:>9,.0f} rows/s"
                  f"   end to end {args.compare_rows / result['seconds']:>9,.0f} rows/s   peak RSS {result['peak_mb']:>6.0f} MB"
                  f"   stages {result['stages']}", flush=True)

    if args.rows:
        big = work / "big.parquet"
        started = time.perf_counter()
        make_parquet(big, args.rows)
        size_mb = big.stat().st_size / 2**20
        print(f"{args.rows:,} rows x 20 columns: {size_mb:.0f} MB Parquet ({time.perf_counter() - started:.0f} s to write)",
              flush=True)
        result = train(work, big, "big", in_memory=False)
        print(f"  train (1 epoch, streamed)  peak RSS {result['peak_mb']:>6.0f} MB  {result['seconds']:>7.0f} s  "
              f"train {result['train_rows'] / result['train_seconds']:,.0f} rows/s  stages {result['stages']}", flush=True)
        peak, seconds, _ = peak_of(["predict", result["run_dir"], str(big), "--output", str(work / "predictions.csv")], work)
        print(f"  predict                    peak RSS {peak:>6.0f} MB  {seconds:>7.0f} s  {args.rows / seconds:,.0f} rows/s",
              flush=True)
        (work / "predictions.csv").unlink(missing_ok=True)  # gigabytes of CSV: measured, not kept
    if args.keep:
        print(f"files in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)  # gigabytes of generated table


if __name__ == "__main__":
    main()

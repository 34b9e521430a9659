"""How long does preprocessing take on wide tables? Seconds per stage for 1,000 / 5,000 / 20,000 columns.

    python bench/wide.py [--rows N] [--columns 1000 5000 20000]

Issue 14, item 9: a 5,000-column CSV spent 94 s in preprocessing and 100,000 columns did not finish in 15 minutes,
because every column ran its own chain of pandas calls. Preprocessing is now vectorised per dtype (all numeric
columns as one matrix); per-column work is left only for text columns. The table is generated with a fixed seed:
90% float columns (5% of cells empty), 5% 0/1 columns, 5% text columns with three values, and a class target.
Stages: read (the CSV into a frame), columns (role inference and cleaning, data/columns.py + clean.py, inside
load_dataset with the split), fit (Preprocessor.fit on the training rows) and transform (all rows to a float32
matrix). Prints one line per width; the time should grow linearly with the column count.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dlrun.config.schema import DataConfig, PreprocessConfig  # noqa: E402
from dlrun.data.load import load_dataset, read_csv  # noqa: E402
from dlrun.data.preprocess import Preprocessor  # noqa: E402


def make_wide(n_rows: int, n_columns: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_binary, n_text = n_columns // 20, n_columns // 20
    n_float = n_columns - n_binary - n_text
    floats = rng.normal(size=(n_rows, n_float)).round(4)
    floats[rng.random(floats.shape) < 0.05] = np.nan
    columns = {f"f{i}": floats[:, i] for i in range(n_float)}
    columns.update({f"b{i}": rng.integers(0, 2, n_rows) for i in range(n_binary)})
    columns.update({f"t{i}": rng.choice(["red", "green", "blue"], n_rows) for i in range(n_text)})
    frame = pd.DataFrame(columns)
    frame["target"] = np.where(np.nan_to_num(floats[:, 0]) + np.nan_to_num(floats[:, 1]) > 0, "yes_class", "no_class")
    return frame


def measure(n_rows: int, n_columns: int, folder: Path) -> dict[str, float]:
    path = folder / f"wide_{n_columns}.csv"
    make_wide(n_rows, n_columns).to_csv(path, index=False)
    cfg = DataConfig(path=str(path), target="target")
    seconds = {}
    started = time.perf_counter()
    read_csv(path, keep_tokens=True)
    seconds["read"] = time.perf_counter() - started
    started = time.perf_counter()
    dataset = load_dataset(cfg, seed=0)  # reads again, then infers roles, cleans and splits
    seconds["columns"] = time.perf_counter() - started - seconds["read"]
    started = time.perf_counter()
    prep = Preprocessor(PreprocessConfig(), dataset.features, dataset.targets, dataset.tasks, dataset.columns)
    prep.fit(dataset.part("train"))
    seconds["fit"] = time.perf_counter() - started
    started = time.perf_counter()
    X = prep.transform_features(dataset.frame)
    seconds["transform"] = time.perf_counter() - started
    assert X.shape == (n_rows, len(prep.feature_names_))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--columns", type=int, nargs="+", default=[1000, 5000, 20000])
    args = parser.parse_args()
    print(f"{args.rows} rows; seconds per stage (read, column roles + cleaning, fit, transform)")
    with tempfile.TemporaryDirectory() as folder:
        for n_columns in args.columns:
            s = measure(args.rows, n_columns, Path(folder))
            total = sum(s.values())
            print(f"{n_columns:>7,} columns: read {s['read']:6.2f}  columns {s['columns']:6.2f}  fit {s['fit']:6.2f}  "
                  f"transform {s['transform']:6.2f}  total {total:6.2f} s  ({1e3 * total / n_columns:.2f} ms per column)",
                  flush=True)


if __name__ == "__main__":
    main()

"""How fast is dlrun? Median CPU epoch time against three baselines, and whole `dlrun` processes stage by stage.

    python bench/speed.py [--epochs N] [--repeats N] [--quick] [--threads N]

The task (issue 3, item 12): 10,000 training rows x 10 features of seeded random regression data, an MLP
10 -> 64 -> 32 -> 16 -> 1 with ReLU, Adam (lr 1e-3, no weight decay), batch 32, CPU. Compared:

  (a) seed-style:   TensorDataset + DataLoader(shuffle=True), nn.Sequential, torch.optim.Adam, loss.item() per batch
  (b) slicing:      randperm once per epoch, X[perm] once, then contiguous slices X[i:i+32]
  (c) scikit-learn: MLPRegressor(64, 32, 16), adam, batch 32, one `partial_fit` call per epoch
  (d) dlrun:        dlrun.trainer.fit, built exactly as dlrun.runner.train builds it (config, CSV, preprocessing, model),
                    on its fast step (fast_step.py) and, for comparison, with train.fast_path false (autograd)

Every method trains on the same preprocessed tensors (dlrun's Preprocessor output) for one warm-up epoch plus
`--epochs` timed epochs; the median of the timed epochs is reported with the last epoch's mean training MSE (on the
standardised target), so equal work shows as similar losses. The baselines' epochs are interleaved with dlrun's
(one epoch of each after every dlrun epoch), so a burst of load on a shared machine hits all methods alike. Extra
rows repeat (b) and (d) at batch 256 and 1024 and with a wider 512-256 model, so a regression in another regime is
visible too.

Every method runs with the same `torch.set_num_threads(--threads)` (and BLAS threads for scikit-learn).
`dlrun train` picks its own count (`train.threads`, see dlrun.device.choose_threads); the output says what it would
pick for these regimes. Timings on a small shared machine are noisy: compare ratios from one run, not seconds across
runs.

The second table runs the real CLI in subprocesses (median of --repeats runs, threads as dlrun picks them):
`dlrun train configs/salary.yaml` as shipped, `dlrun train` on a generated 100,000-row CSV (8 numeric columns and
one text column, default model, 10 epochs) and `dlrun predict` on those 100,000 rows. run.json's `seconds` gives
the stages inside the process; start-up and exit (imports, config, summary) is the rest of the wall time.

The last line is start-up against the torch import (bench/startup.py, which also runs on its own).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dlrun.training.callbacks import Checkpoints, MetricsLog
from dlrun.config.load import validate_config
from dlrun.data.load import load_dataset
from dlrun.model.device import choose_threads
from dlrun.data.tensors import to_split
from dlrun.model.mlp import build_model
from dlrun.data.preprocess import Preprocessor
from dlrun.run.runner import resolve
from dlrun.training.callbacks import Callback
from dlrun.training.loop import fit
from startup import startup_line  # bench/startup.py, beside this script

N_TRAIN, N_VAL, N_TEST, N_FEATURES = 10_000, 2_000, 100, 10
N_BIG, BIG_EPOCHS = 100_000, 10
SEED = 0
REPO = Path(__file__).resolve().parent.parent
BASE = {"hidden": [64, 32, 16], "batch_size": 32}
# (b) and (d) again in other regimes: bigger batches (fewer, larger steps) and a wider model (matmul-bound).
REGIMES = [
    {"hidden": [64, 32, 16], "batch_size": 256},
    {"hidden": [64, 32, 16], "batch_size": 1024},
    {"hidden": [512, 256], "batch_size": 32},
]


def write_csv(path: Path) -> None:
    """A seeded nonlinear regression table; a `split` column fixes exactly N_TRAIN training rows for every method."""
    rng = np.random.default_rng(SEED)
    n_rows = N_TRAIN + N_VAL + N_TEST
    X = rng.standard_normal((n_rows, N_FEATURES))  # (n_rows, n_features)
    w = rng.standard_normal(N_FEATURES)
    y = X @ w + np.sin(2 * X[:, 0]) * X[:, 1] + 0.5 * X[:, 2] ** 2 + 0.3 * rng.standard_normal(n_rows)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(N_FEATURES)])
    frame["y"] = y
    frame["split"] = ["train"] * N_TRAIN + ["val"] * N_VAL + ["test"] * N_TEST
    frame.to_csv(path, index=False, float_format="%.6f")


def write_big_csv(path: Path) -> None:
    """N_BIG rows for the whole-process rows: 8 numeric columns, a text column (one-hot encoded) and a target."""
    rng = np.random.default_rng(SEED)
    X = rng.standard_normal((N_BIG, 8))  # (n_rows, 8)
    city = rng.choice(["north", "south", "east", "west", "centre"], N_BIG)
    y = X @ rng.standard_normal(8) + np.sin(2 * X[:, 0]) * X[:, 1] + 1.5 * (city == "north") + 0.3 * rng.standard_normal(N_BIG)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(8)])
    frame["city"], frame["y"] = city, y
    frame.to_csv(path, index=False, float_format="%.5f")


def dlrun_setup(csv: Path, hidden: list[int], batch_size: int, epochs: int, fast_path: bool = True):
    """Config -> dataset -> fitted preprocessor -> tensors -> model, in the order dlrun.runner.train does it."""
    raw = {
        "name": "speed", "seed": SEED, "device": "cpu",
        "data": {"path": str(csv), "target": "y", "task": "regression", "split": {"column": "split"}, "batch_size": batch_size},
        "model": {"hidden": hidden, "activation": "relu", "dropout": 0.0},
        "optimizer": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0},
        "train": {"epochs": epochs, "early_stopping": None, "fast_path": fast_path},
    }
    device = torch.device("cpu")
    cfg = validate_config(raw, source="bench/speed.py")
    dataset = load_dataset(cfg.data, cfg.seed)
    cfg = resolve(cfg, dataset)
    prep = Preprocessor(cfg.preprocess, dataset.features, dataset.targets, dataset.tasks).fit(dataset.part("train"))
    splits = {name: to_split(prep, dataset.part(name), device) for name in ("train", "val")}
    model = build_model(len(prep.feature_names_), prep.output_sizes(), cfg.model, cfg.seed).to(device)
    return cfg, prep, splits, model, device


class Interleaved(Callback):
    """Times fit's epochs and, after each, one epoch of every baseline, so all methods run under the same load of a
    shared machine. A dlrun epoch is the wall time from the end of the previous epoch's baselines to this epoch's
    end: everything fit does per epoch (training, validation scoring, best-weight copy) plus the
    callbacks before this one."""

    def __init__(self, baselines: dict[str, Callable[[], float]]):
        self.baselines = baselines
        self.seconds: dict[str, list[float]] = {name: [] for name in ["dlrun", *baselines]}
        self.losses: dict[str, float] = {}

    def on_train_begin(self, state) -> None:
        self.last = time.perf_counter()

    def on_epoch_end(self, state, row) -> None:
        self.seconds["dlrun"].append(time.perf_counter() - self.last)
        self.losses["dlrun"] = row["train_loss"]
        for name, run_epoch in self.baselines.items():
            start = time.perf_counter()
            self.losses[name] = run_epoch()
            self.seconds[name].append(time.perf_counter() - start)
        self.last = time.perf_counter()

    def result(self, name: str) -> tuple[float, float]:
        """Median seconds per epoch after the warm-up epoch, and the last epoch's training loss."""
        return statistics.median(self.seconds[name][1:]), self.losses[name]


def run_dlrun(csv: Path, hidden: list[int], batch_size: int, epochs: int,
              baselines: dict[str, Callable[[], float]] | None = None, log_dir: Path | None = None,
              fast_path: bool = True) -> Interleaved:
    """(d), fit for one warm-up plus `epochs` epochs, with one epoch of each baseline after each of its epochs."""
    cfg, prep, splits, model, device = dlrun_setup(csv, hidden, batch_size, epochs + 1, fast_path)
    clock = Interleaved(baselines or {})
    # The files `dlrun train` writes each epoch: only in one row, so the other rows time the training loop itself.
    files = [MetricsLog(log_dir / "metrics.csv"), Checkpoints(log_dir / "checkpoints")] if log_dir else []
    with torch.random.fork_rng(devices=[]):  # as runner.train does
        torch.manual_seed(cfg.seed)
        fit(model, splits["train"], splits["val"], prep, cfg, device, [*files, clock])
    return clock


def make_mlp(hidden: list[int]) -> nn.Sequential:
    torch.manual_seed(SEED)
    layers, width = [], N_FEATURES
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    return nn.Sequential(*layers, nn.Linear(width, 1))


def dataloader_epoch(X: torch.Tensor, y: torch.Tensor, hidden: list[int], batch_size: int) -> Callable[[], float]:
    """(a): the loop most tutorials (and a first version of a project) start from; returns one epoch's function."""
    model = make_mlp(hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(X, y.unsqueeze(1)), batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(SEED))

    def epoch() -> float:
        total = 0.0
        for xb, yb in loader:  # xb (B, n_features), yb (B, 1)
            optimizer.zero_grad()
            loss = F.mse_loss(model(xb), yb)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(xb)
        return total / len(X)

    return epoch


def slicing_epoch(X: torch.Tensor, y: torch.Tensor, hidden: list[int], batch_size: int, fused: bool = False) -> Callable[[], float]:
    """(b): one gather per epoch, then contiguous slices; the loss is summed on the device (no host sync per batch)."""
    model = make_mlp(hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused or None)
    shuffler = torch.Generator().manual_seed(SEED)
    n_rows = len(X)

    def epoch() -> float:
        order = torch.randperm(n_rows, generator=shuffler)
        X_epoch, y_epoch = X[order], y[order].unsqueeze(1)  # (n_rows, n_features), (n_rows, 1)
        total = torch.zeros(())
        for start in range(0, n_rows, batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss = F.mse_loss(model(X_epoch[start : start + batch_size]), y_epoch[start : start + batch_size])
            loss.backward()
            optimizer.step()
            total += loss.detach() * min(batch_size, n_rows - start)
        return float(total / n_rows)

    return epoch


def sklearn_epoch(X: torch.Tensor, y: torch.Tensor, hidden: list[int], batch_size: int, threads: int) -> Callable[[], float]:
    """(c): one `partial_fit` call is exactly one shuffled pass over the rows with Adam state kept between calls,
    so each epoch is timed on its own like the others (max_iter=N would give only a total, and its convergence
    checks could end early). alpha=0 matches weight_decay 0; sklearn's `loss_` is half the MSE, hence the 2x."""
    from sklearn.neural_network import MLPRegressor
    from threadpoolctl import threadpool_limits

    model = MLPRegressor(hidden_layer_sizes=tuple(hidden), batch_size=batch_size, solver="adam",
                         learning_rate_init=1e-3, alpha=0.0, shuffle=True, random_state=SEED)
    X_np, y_np = X.numpy(), y.numpy()  # float32 in, so sklearn computes in float32 like torch

    def epoch() -> float:
        with threadpool_limits(limits=threads, user_api="blas"):
            return 2 * model.partial_fit(X_np, y_np).loss_

    return epoch


def median_wall(command: list[str], repeats: int) -> float:
    subprocess.run(command, capture_output=True, check=True)  # untimed: warms the file cache
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def train_process(args: list[str], runs_dir: Path, repeats: int) -> dict[str, float]:
    """`dlrun train ARGS` in a subprocess `repeats` times: median wall time and median stage times from run.json."""
    runs = []
    for i in range(repeats):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "dlrun", "train", *args, "--runs-dir", str(runs_dir / str(i))],
                              cwd=REPO, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - start
        run_dir = REPO / done.stdout.strip().splitlines()[-1]
        info = json.loads((run_dir / "run.json").read_text())
        epochs = pd.read_csv(run_dir / "metrics.csv")["seconds"]
        runs.append({"wall": wall, **info["seconds"], "epochs": info["epochs_run"], "epoch": float(epochs.median()),
                     "startup_and_exit": wall - sum(info["seconds"].values()), "path": info["train_step"]["path"],
                     "threads": info["threads"]})
    return {key: statistics.median(run[key] for run in runs) if isinstance(runs[0][key], float) else runs[-1][key]
            for key in runs[0]}


def predict_process(run_dir: Path, csv: Path, output: Path, repeats: int) -> tuple[float, float]:
    """Median wall time of `dlrun predict` in a subprocess, and of the library call `dlrun.predict` in this process."""
    from dlrun.inference.batch import predict

    command = [sys.executable, "-m", "dlrun", "predict", str(run_dir), str(csv), "--output", str(output)]
    process = median_wall(command, repeats)
    library = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict(run_dir, csv, output, device="cpu")
        library.append(time.perf_counter() - start)
    return process, statistics.median(library)


def cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo (Linux), else what the platform module says."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def versus(dlrun_seconds: float, other_seconds: float) -> str:
    ratio = other_seconds / dlrun_seconds
    return f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x SLOWER"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10, help="timed epochs per method, after one warm-up epoch (default 10)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each whole-process command (default 3)")
    parser.add_argument("--quick", action="store_true", help="2 timed epochs, 1 for the extra regimes, 1 run per process; a smoke test")
    parser.add_argument("--threads", type=int, default=1, help="torch (and BLAS) threads for every method (default 1)")
    args = parser.parse_args()
    if args.epochs < 1 or args.threads < 1 or args.repeats < 1:
        parser.error("--epochs, --repeats and --threads must be at least 1")
    epochs = 2 if args.quick else args.epochs
    extra_epochs = 1 if args.quick else max(1, epochs // 2)
    repeats = 1 if args.quick else args.repeats
    load_before = os.getloadavg()[0]
    # Before set_num_threads: for large models dlrun's choice is "all cores", read from torch's default.
    auto = {choose_threads(None, N_FEATURES, r["hidden"], r["batch_size"], torch.device("cpu")) for r in [BASE, *REGIMES]}
    torch.set_num_threads(args.threads)
    hidden, batch_size = BASE["hidden"], BASE["batch_size"]

    rows = []  # (method, batch, hidden, seconds per epoch, final train loss, note)
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "speed.csv"
        write_csv(csv)
        _, _, splits, _, _ = dlrun_setup(csv, hidden, batch_size, 1)
        X, y = splits["train"].X, splits["train"].y["y"]  # (10000, 10) float32, (10000,) standardised

        baselines = {
            "a": dataloader_epoch(X, y, hidden, batch_size),
            "b": slicing_epoch(X, y, hidden, batch_size),
            "b_fused": slicing_epoch(X, y, hidden, batch_size, fused=True),
            "c": sklearn_epoch(X, y, hidden, batch_size, args.threads),
        }
        base = run_dlrun(csv, hidden, batch_size, epochs, baselines)
        autograd = run_dlrun(csv, hidden, batch_size, epochs, fast_path=False).result("dlrun")
        logged = run_dlrun(csv, hidden, batch_size, epochs, log_dir=Path(tmp) / "run").result("dlrun")
        results = {name: base.result(name) for name in ["dlrun", *baselines]}
        rows += [
            ("(a) DataLoader loop", batch_size, hidden, *results["a"], "torch.optim.Adam defaults"),
            ("(b) tensor slicing", batch_size, hidden, *results["b"], "torch.optim.Adam defaults"),
            ("(b) + fused Adam", batch_size, hidden, *results["b_fused"], "not in the ratios"),
            ("(c) sklearn MLPRegressor", batch_size, hidden, *results["c"], "partial_fit per epoch"),
            ("(d) dlrun fit, fast step", batch_size, hidden, *results["dlrun"], f"incl. val scoring of {N_VAL} rows"),
            ("(d) dlrun fit, autograd", batch_size, hidden, *autograd, "train.fast_path: false; run on its own"),
            ("(d) + runner's file callbacks", batch_size, hidden, *logged, "+ metrics.csv, last/best.pt; run on its own"),
        ]
        for regime in REGIMES:
            widths, size = regime["hidden"], regime["batch_size"]
            clock = run_dlrun(csv, widths, size, extra_epochs, {"b": slicing_epoch(X, y, widths, size)})
            fast, b = clock.result("dlrun"), clock.result("b")
            slow = run_dlrun(csv, widths, size, extra_epochs, fast_path=False).result("dlrun")
            rows.append(("(b) tensor slicing", size, widths, *b, ""))
            rows.append(("(d) dlrun fit, fast step", size, widths, *fast, f"vs (b): {versus(fast[0], b[0])}"))
            rows.append(("(d) dlrun fit, autograd", size, widths, *slow, f"fast step {versus(fast[0], slow[0])}"))

        big_csv, big_config = Path(tmp) / "big.csv", Path(tmp) / "big.yaml"
        write_big_csv(big_csv)
        big_config.write_text(json.dumps({"name": "big", "data": {"path": str(big_csv), "target": "y"},
                                          "train": {"epochs": BIG_EPOCHS, "early_stopping": None}}))
        processes = {
            "configs/salary.yaml": train_process(["configs/salary.yaml"], Path(tmp) / "salary", repeats),
            f"{N_BIG:,}-row CSV": train_process([str(big_config)], Path(tmp) / "big", repeats),
        }
        big_run = next((Path(tmp) / "big" / "0").iterdir())
        predict_wall, predict_library = predict_process(big_run, big_csv, Path(tmp) / "predictions.csv", repeats)

    startup = startup_line(5)
    help_seconds = median_wall([sys.executable, "-m", "dlrun", "--help"], 5)
    torch_seconds = median_wall([sys.executable, "-c", "import torch"], 5)

    print(f"machine: {os.cpu_count()} CPU cores ({cpu_model()}), torch {torch.__version__}; load average "
          f"{load_before:.2f} before and {os.getloadavg()[0]:.2f} after (1-minute averages; the bench itself adds about 1)")
    print(f"dlrun bench/speed.py: {N_TRAIN} train rows x {N_FEATURES} features, Adam lr 1e-3, CPU, "
          f"torch {torch.__version__}, torch.set_num_threads({args.threads}) and BLAS threads {args.threads} for every method")
    print(f"median of {epochs} epochs after 1 warm-up ({extra_epochs} for the extra regimes), each baseline's epoch run right "
          "after one of dlrun's so they share the machine's load; "
          "train loss = last epoch's mean batch MSE on the standardised target")
    print(f"`dlrun train` with train.threads unset would use {' or '.join(map(str, sorted(auto)))} thread(s) for these rows")
    print("(d) time = fit's epoch: training + per-epoch validation scoring + best-weight copy; "
          "fit is called without runner's file callbacks except in the row that says so\n")
    header = f"{'method':<31}{'batch':>6}  {'hidden':<12}{'s/epoch':>9}{'train loss':>12}  note"
    print(header)
    print("-" * len(header))
    for method, batch, widths, seconds, loss, note in rows:
        print(f"{method:<31}{batch:>6}  {'-'.join(map(str, widths)):<12}{seconds:>9.3f}{loss:>12.4f}  {note}")
    print()
    for key, name in (("a", "(a) DataLoader loop"), ("b", "(b) tensor slicing"), ("c", "(c) sklearn MLPRegressor")):
        print(f"dlrun vs {name:<25} {versus(results['dlrun'][0], results[key][0])}")

    print(f"\nwhole processes, median of {repeats} run(s), seconds; threads as `dlrun train` picks them")
    header = (f"{'dlrun train':<22}{'epochs':>7}{'wall':>7}{'start-up+exit':>15}{'load+preprocess':>17}"
              f"{'train':>7}{'s/epoch':>9}{'eval+write':>12}{'plots+report':>14}  step, threads")
    print(header)
    print("-" * len(header))
    for name, t in processes.items():
        print(f"{name:<22}{t['epochs']:>7}{t['wall']:>7.2f}{t['startup_and_exit']:>15.2f}{t['load_and_preprocess']:>17.2f}"
              f"{t['train']:>7.2f}{t['epoch']:>9.3f}{t['evaluate_and_write']:>12.2f}{t['plots_and_report']:>14.2f}"
              f"  {t['path']}, {t['threads']}")
    print(f"dlrun predict, {N_BIG:,} rows: {predict_wall:.2f}s for the process, {predict_library:.2f}s inside "
          "dlrun.predict (read, preprocess, forward, write the CSV)")
    print(f"\n`dlrun --help` {help_seconds:.3f}s vs `python -c 'import torch'` {torch_seconds:.3f}s (median of 5): "
          f"{help_seconds / torch_seconds:.2f} of the torch import (target: under 0.25)")
    print(startup)
    print("\nNoisy: a 2-core machine that may be running other work; compare ratios within one run.")


if __name__ == "__main__":
    main()

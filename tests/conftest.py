"""Shared fixtures: tiny CSVs, a fast config factory and helpers that run the real CLI in a subprocess.

Every run directory a test creates lives under pytest's tmp_path (always `--runs-dir`), never in the repo's runs/.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pytest
import yaml

from dlrun.training.state import Callback

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"
DATA = REPO / "dlrun" / "data" / "builtin"

# Settings that keep a training run to a fraction of a second; tests override what they exercise.
FAST = {
    "seed": 0,
    "device": "cpu",
    "report": False,  # plots and report.html cost 1-2 s per run; tests of them turn it on
    "model": {"hidden": [16, 8], "dropout": 0.0},
    "optimizer": {"lr": 0.01},
    "train": {"epochs": 5},
}


# ---- data --------------------------------------------------------------------------------------
def make_regression_frame(n_rows: int = 60, seed: int = 0) -> pd.DataFrame:
    """Mixed numeric/categorical features with missing values; `price` depends on size, rooms and city."""
    rng = np.random.default_rng(seed)
    size = rng.uniform(30, 150, n_rows).round(1)
    rooms = rng.integers(1, 6, n_rows)
    city = rng.choice(["Paris", "Lyon", "Nice"], n_rows).astype(object)
    price = 2_000 * size + 10_000 * rooms + np.where(city == "Paris", 50_000, 0) + rng.normal(0, 5_000, n_rows)
    frame = pd.DataFrame({"size": size, "rooms": rooms, "city": city, "price": price.round(2)})
    frame.loc[[3, 17, 40], "size"] = np.nan
    frame.loc[[5, 22], "city"] = np.nan
    return frame


def make_classification_frame(n_rows: int = 60, seed: int = 0) -> pd.DataFrame:
    """Two numeric features and a colour; `species` (text labels) is decided by x1 and x2."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n_rows).round(3), rng.normal(size=n_rows).round(3)
    colour = rng.choice(["red", "green"], n_rows)
    species = np.where(x1 > 0.3, "cat", np.where(x2 > 0, "dog", "bird"))
    return pd.DataFrame({"x1": x1, "x2": x2, "colour": colour, "species": species})


@pytest.fixture
def regression_csv(tmp_path: Path) -> Path:
    path = tmp_path / "houses.csv"
    make_regression_frame().to_csv(path, index=False)
    return path


@pytest.fixture
def classification_csv(tmp_path: Path) -> Path:
    path = tmp_path / "pets.csv"
    make_classification_frame().to_csv(path, index=False)
    return path


# ---- configs -----------------------------------------------------------------------------------
def merge(base: dict, extra: dict) -> dict:
    """Recursive dict merge: `extra` wins; nested sections merge key by key."""
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


def write_config(path: Path, data: dict, **sections: Any) -> Path:
    """A fast config (FAST merged with `sections`) for the given data section, written as YAML."""
    path.write_text(yaml.safe_dump(merge(FAST, {"data": data, **sections}), sort_keys=False))
    return path


@pytest.fixture
def make_config(tmp_path: Path):
    """make_config(data={...}, name="x", train={...}) -> path of a fast YAML config in tmp_path."""
    counter = iter(range(1_000_000))

    def make(data: dict, **sections: Any) -> Path:
        return write_config(tmp_path / f"config{next(counter)}.yaml", data, **sections)

    return make


# ---- the real CLI ------------------------------------------------------------------------------
def run_cli(*args: str, cwd: Path | str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m dlrun ARGS` in a subprocess; returns the CompletedProcess with text stdout/stderr."""
    env = {**os.environ, "COLUMNS": "200"}  # wide enough that rich does not wrap messages
    return subprocess.run(
        [sys.executable, "-m", "dlrun", *map(str, args)],
        cwd=cwd or REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )


def run_cli_many(commands: dict[str, tuple[Sequence[str], Path | str | None]]) -> dict[str, subprocess.CompletedProcess]:
    """Run several independent CLI calls at once ({key: (args, cwd)}): each call spends most of its time importing
    torch, so running them side by side keeps the end-to-end tests fast. Results are as from `run_cli`."""
    workers = max(2, (os.cpu_count() or 2) + 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {key: pool.submit(run_cli, *args, cwd=cwd) for key, (args, cwd) in commands.items()}
        return {key: future.result() for key, future in futures.items()}


@pytest.fixture(scope="session")
def cli():
    """The `run_cli` helper as a fixture."""
    return run_cli


@pytest.fixture(scope="session")
def finished_runs(tmp_path_factory) -> dict[str, Path]:
    """Two finished runs trained once per session in-process: "classification" (three species, dropout 0.3) and
    "regression" (price in euros). Tests read them; rebuilding their plots or report is fine, training again is not."""
    import dlrun
    from dlrun.config.load import validate_config

    root = tmp_path_factory.mktemp("finished")
    make_classification_frame(150).to_csv(root / "pets.csv", index=False)
    make_regression_frame(150).to_csv(root / "houses.csv", index=False)
    specs = {
        "classification": ({"path": str(root / "pets.csv"), "target": "species"},
                           {"report": True, "model": {"hidden": [16, 8], "dropout": 0.3}}),
        "regression": ({"path": str(root / "houses.csv"), "target": "price", "units": {"price": "euros"}}, {"report": True}),
    }
    return {kind: dlrun.train(validate_config(merge(FAST, {"data": data, "name": kind, **extra})), root / "runs").run_dir
            for kind, (data, extra) in specs.items()}


class InterruptAfter(Callback):
    """Ctrl-C at the end of an epoch, after its checkpoints are written."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, state, row):
        if state.epoch == self.epoch:
            raise KeyboardInterrupt

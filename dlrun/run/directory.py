"""The run directory: creating it, environment facts, config.yaml, and reopening a finished run (names: layout.py)."""

from __future__ import annotations

import platform
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import yaml

from dlrun.config.schema import Config
from dlrun.config.load import validate_config
from dlrun.config.yaml_load import load_yaml
from dlrun.model.device import resolve_device
from dlrun.core.errors import RunError
from dlrun.core.io import read_json, write_text
from dlrun.model.mlp import MLP, build_model
from dlrun.data.preprocess import Preprocessor
from dlrun.run import layout
from dlrun.run.record import read_record
from dlrun.training.checkpoint import load_checkpoint, load_weights


def create_run_dir(runs_dir: Path, name: str) -> Path:
    """runs/<YYYYmmdd-HHMMSS>-<name>[-N]: mkdir is atomic, so two runs in one second get distinct names."""
    runs_dir = Path(runs_dir)
    stem = f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{name}"
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, 10_000):
            run_dir = runs_dir / (stem if attempt == 1 else f"{stem}-{attempt}")
            try:
                run_dir.mkdir()
            except FileExistsError:
                continue
            (run_dir / layout.CHECKPOINTS).mkdir()
            return run_dir
    except OSError as exc:  # a file in the way, no permission, a read-only or virtual file system (/proc), a full disk
        raise RunError(f"--runs-dir {runs_dir} is not a writable directory ({exc.strerror or exc})") from None
    raise RunError(f"could not create a new run directory under {runs_dir}")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def environment() -> dict[str, Any]:
    """Library versions and the git commit of the working directory, for reproducing a run."""
    from importlib.metadata import PackageNotFoundError, version

    from dlrun import __version__

    versions = {"python": platform.python_version(), "dlrun": __version__}
    for package in ("torch", "numpy", "pandas", "pydantic"):
        try:  # read from package metadata: importing a library just for its version would slow every run
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return {"versions": versions, "git_commit": _git_commit()}


def _git_commit() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


@dataclass(frozen=True)
class FittedRun:
    """A finished run reopened for scoring or serving: its config, preprocessing and best model."""

    run_dir: Path
    cfg: Config
    prep: Preprocessor
    model: MLP
    device: torch.device
    run_status: str | None  # run.json's: completed, running (or killed), "failed: <reason>"; None without a run.json
    checkpoint_epoch: int | None  # the epoch best.pt was saved at


@dataclass(frozen=True)
class SavedRun:
    """A run directory's resolved config and fitted preprocessing."""

    cfg: Config
    prep: Preprocessor


def read_config(run_dir: Path) -> Config:
    """A run directory's resolved config.yaml; raises RunError naming what is wrong."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"run directory not found: {run_dir}")
    if not (run_dir / layout.CONFIG).is_file():
        raise RunError(f"{run_dir} is not a dlrun run: {layout.CONFIG} is missing")
    try:
        raw = load_yaml((run_dir / layout.CONFIG).read_text())
    except (yaml.YAMLError, ValueError, OSError) as exc:
        raise RunError(f"{run_dir} has a damaged {layout.CONFIG} ({exc})") from None
    return validate_config(raw if isinstance(raw, dict) else {}, source=str(run_dir / layout.CONFIG))


def open_run_files(run_dir: Path) -> SavedRun:
    """Load and check config.yaml and preprocess.json; raises RunError naming what is wrong."""
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    if not (run_dir / layout.PREPROCESS).is_file():
        raise RunError(f"{run_dir} is not a dlrun run: {layout.PREPROCESS} is missing")
    try:
        prep_state = read_json(run_dir / layout.PREPROCESS)
    except ValueError as exc:
        raise RunError(f"{run_dir} has a damaged {layout.PREPROCESS} ({exc})") from None
    return SavedRun(cfg, Preprocessor.from_dict(prep_state))


def open_run(run_dir: Path, device: str | None = None) -> FittedRun:
    """Load config.yaml, preprocess.json and checkpoints/best.pt; raises RunError naming what is wrong."""
    run_dir = Path(run_dir)
    saved = open_run_files(run_dir)
    best = run_dir / layout.BEST_CHECKPOINT
    if not best.is_file():
        raise RunError(f"{run_dir} is not a finished dlrun run: {layout.BEST_CHECKPOINT} is missing")
    target_device = resolve_device(device or "cpu")
    checkpoint = load_checkpoint(best, target_device)
    model = build_model(len(saved.prep.feature_names_), saved.prep.output_sizes(), saved.cfg.model, saved.cfg.seed,
                        saved.prep.input_layout())
    load_weights(model, checkpoint["model"], best)
    model.to(target_device).eval()
    return FittedRun(run_dir, saved.cfg, saved.prep, model, target_device, read_record(run_dir).status_text,
                     checkpoint.get("epoch"))


def write_config(run_dir: Path, cfg: Config) -> None:
    write_text(Path(run_dir) / layout.CONFIG, cfg.to_yaml())

"""`dlrun train --resume RUN --set train.epochs=N`: more epochs for a finished or interrupted run, and nothing else.

Every other key stays as the run's config.yaml has it: changing the data, the model or the optimizer halfway would
make a run whose history no single config explains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from dlrun.config.load import load_config
from dlrun.config.schema import Config
from dlrun.core.errors import ConfigError, RunError
from dlrun.run import layout

EXTENSIBLE = "train.epochs"


def check_resume_overrides(overrides: Sequence[str]) -> None:
    """Refuse every `--set` key but train.epochs, naming it; raises ConfigError."""
    for override in overrides:
        key = override.partition("=")[0].strip()
        if key != EXTENSIBLE:
            raise ConfigError(f"--set {key or repr(override)} cannot change a resumed run: it continues with its own "
                              f"{layout.CONFIG}; only --set {EXTENSIBLE}=N may be given, to train it for more epochs")


def extended_config(run_dir: Path, overrides: Sequence[str], checkpoint: dict[str, Any] | None, completed: bool) -> Config:
    """The run's config with train.epochs from `overrides`, checked against where the run stands; raises DlrunError."""
    check_resume_overrides(overrides)
    cfg = load_config(Path(run_dir) / layout.CONFIG, list(overrides))
    done = checkpoint["epoch"] if checkpoint is not None else 0
    stop = (checkpoint or {}).get("stop") or {}
    if completed and stop.get("stop"):
        raise RunError(f"{run_dir} ended by early stopping ({stop.get('reason')}); more epochs would not train it "
                       "further: train a new run (train.init_from can start from its weights)")
    if cfg.train.epochs < done or (completed and cfg.train.epochs == done):
        raise RunError(f"--set {EXTENSIBLE}={cfg.train.epochs}: {run_dir} has already trained {done} epochs; "
                       f"give more than {done}")
    return cfg

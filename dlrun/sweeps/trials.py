"""A trial's config and run directory, derived from the sweep's base config and the sampled values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dlrun.config.schema import Config
from dlrun.config.load import set_key, validate_config


def base_config(cfg: Config) -> dict[str, Any]:
    """The config every trial starts from: the sweep's, without its search section."""
    raw = cfg.model_dump(mode="json")
    raw.pop("search")
    return raw


def trial_config(base: dict[str, Any], params: dict[str, Any], source: str, name: str | None = None) -> Config:
    """The base config with a trial's values set as `--set` would; an invalid combination names the key."""
    raw = yaml.safe_load(yaml.safe_dump(base))  # a deep copy of plain data
    # Plots and report.html cost 1-2 s a trial, as much as training one; `dlrun report TRIAL_DIR` draws them on demand.
    raw["report"] = False
    if name is not None:
        raw["name"] = name
    for key, value in params.items():
        set_key(raw, key, value, source)
    return validate_config(raw, source=source)


def fingerprint(cfg: Config) -> dict[str, Any]:
    """What must match for a worker to join a study: the config, less what may differ per machine or per re-run."""
    raw = cfg.model_dump(mode="json")
    raw.pop("device")
    raw["search"].pop("trials")
    return raw


def trial_run_dir(sweep_dir: Path, number: int) -> Path | None:
    """The trial's run directory on this machine (its name ends with the trial number), or None."""
    found = sorted((Path(sweep_dir) / "trials").glob(f"*-trial{number:04d}"))
    return found[-1] if found else None

"""`dlrun runs` and `dlrun compare`: what the run directories hold, read from run.json and metrics.json only.

Standard library, pydantic and PyYAML only: listing a hundred runs must not wait for torch or pandas to import.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import yaml

from dlrun.config.yaml_load import load_yaml
from dlrun.core.errors import RunError
from dlrun.metrics.names import flatten, is_maximised
from dlrun.run import layout
from dlrun.run.lock import is_held
from dlrun.run.record import RunRecord, read_record

# The test metric a listing shows per task: the one most people rank such models by.
HEADLINE_METRIC = {"classification": "accuracy", "regression": "rmse"}
RUN_ID = re.compile(r"^\d{8}-\d{6}-(?P<name>.+?)(-\d+)?$")
FACT_KEYS = ("epochs", "duration_s")


@dataclass(frozen=True)
class RunRow:
    """One run directory as a listing shows it; numbers are None where the run has not recorded them."""

    id: str
    path: str
    name: str
    status: str
    data: str | None
    target: str | None
    monitor: str | None
    best_val: float | None  # the monitored metric at the best epoch
    test_metric: str | None  # e.g. "accuracy" (first target's headline metric)
    test_value: float | None
    epochs: int | None
    duration_s: float | None
    metrics: dict[str, float | None] = field(default_factory=dict)  # "test_accuracy", "val_<target>_rmse", ...


def list_runs(runs_dir: Path | str = "runs", sort: str | None = None, name: str | None = None) -> list[RunRow]:
    """Every run directory under `runs_dir` (a folder holding run.json), oldest first or sorted best first by `sort`.

    `name` is a shell-style pattern (`salary*`) matched against the run's name and id; without wildcards it matches
    any name or id containing it.
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise RunError(f"runs directory not found: {runs_dir}")
    rows = [read_run_row(path) for path in sorted(runs_dir.iterdir()) if is_run_dir(path)]
    if name:
        pattern = name.lower() if any(ch in name for ch in "*?[") else f"*{name.lower()}*"
        rows = [row for row in rows if fnmatchcase(row.name.lower(), pattern) or fnmatchcase(row.id.lower(), pattern)]
    return sort_runs(rows, sort) if sort else rows


def is_run_dir(path: Path) -> bool:
    """A folder a run made: it holds run.json, or (a run whose run.json could not be written) its checkpoints folder or
    config.yaml, and is then listed as broken rather than left out."""
    return path.is_dir() and any((path / name).exists() for name in (layout.RECORD, layout.CHECKPOINTS, layout.CONFIG))


def read_run_row(run_dir: Path) -> RunRow:
    """A run's listing row from its run.json and metrics.json; damaged files show in `status`, never raise."""
    run_dir = Path(run_dir)
    try:
        record, problem = read_record(run_dir), None
    except RunError:
        record, problem = RunRecord(), f"damaged {layout.RECORD}"
    if problem is None and not (run_dir / layout.RECORD).is_file():
        problem = f"broken: no {layout.RECORD}"
    metrics, _ = _read_object(run_dir / layout.METRICS)
    match = RUN_ID.match(run_dir.name)
    targets = record.tasks()
    first = next(iter(targets), None)
    headline = HEADLINE_METRIC.get(targets[first]) if first else None
    test = metrics.get("test") if isinstance(metrics.get("test"), dict) else {}
    test_scores = test.get(first) if isinstance(test.get(first), dict) else {}
    return RunRow(
        id=run_dir.name, path=str(run_dir), name=record.name or (match["name"] if match else run_dir.name),
        status=problem or ("lost" if record.status == "running" and not is_held(run_dir) else record.status_text) or "unknown", data=record.data_source, target=", ".join(targets) or None,
        monitor=record.monitor, best_val=_number(record.best_value),
        test_metric=headline, test_value=_number(test_scores.get(headline)) if headline else None,
        epochs=record.epochs_run, duration_s=_duration(record.started, record.ended),
        metrics=flatten_metrics(metrics),
    )


def flatten_metrics(metrics: dict[str, Any]) -> dict[str, float | None]:
    """{split: {target: {metric: v}}} -> named as metrics.csv names its columns: "test_accuracy" for one target,
    "test_<target>_accuracy" for several."""
    flat: dict[str, float | None] = {}
    for split, per_target in metrics.items():
        if isinstance(per_target, dict) and all(isinstance(v, dict) for v in per_target.values()):
            flat.update({key: _number(value) for key, value in flatten(per_target, split).items()})
    return flat


def sort_key_value(row: RunRow, key: str) -> float | None:
    if key == row.monitor:
        return row.best_val
    if key in FACT_KEYS:
        return getattr(row, key)
    return row.metrics.get(key)


def sort_runs(rows: list[RunRow], key: str) -> list[RunRow]:
    """Best first: largest first for accuracy-like metrics, smallest first for losses, errors, epochs and duration;
    runs without the value last. A key no run records is a RunError naming the keys that exist."""
    known = {k for row in rows for k in (*row.metrics, *FACT_KEYS, row.monitor) if k}
    if rows and key not in known:
        raise RunError(f"--sort {key!r} is not recorded by any run; choose one of: {', '.join(sorted(known))}")
    descending = is_maximised(key) and key not in FACT_KEYS
    present = [row for row in rows if sort_key_value(row, key) is not None]
    missing = [row for row in rows if sort_key_value(row, key) is None]
    return sorted(present, key=lambda row: sort_key_value(row, key), reverse=descending) + missing


@dataclass(frozen=True)
class Comparison:
    runs: list[RunRow]
    config: list[tuple[str, list[Any]]]  # (key path, value per run) for every key whose values differ
    metrics: list[tuple[str, list[float | None]]]  # ("test_accuracy", value per run), train then val then test


def compare_runs(run_dirs: list[Path | str]) -> Comparison:
    """The config keys that differ between runs and every recorded metric, side by side."""
    if not run_dirs:
        raise RunError("give at least one run directory to compare")
    for run_dir in run_dirs:
        if not (Path(run_dir) / layout.RECORD).is_file():
            raise RunError(f"{run_dir} is not a dlrun run directory (no {layout.RECORD})")
    runs = [read_run_row(Path(d)) for d in run_dirs]
    configs = [_flat_config(Path(d) / layout.CONFIG) for d in run_dirs]
    keys = list(dict.fromkeys(k for c in configs for k in c))
    differing = [(k, [c.get(k) for c in configs]) for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1]
    metric_keys = dict.fromkeys(k for split in ("train", "val", "test") for r in runs for k in r.metrics if k.startswith(f"{split}_"))
    metric_rows = [(key, [r.metrics.get(key) for r in runs]) for key in metric_keys]
    return Comparison(runs, differing, metric_rows)


def _flat_config(path: Path) -> dict[str, Any]:
    try:
        raw = load_yaml(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return _flatten(raw) if isinstance(raw, dict) else {}


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def metrics_problem(metrics: dict[str, Any]) -> str | None:
    """What makes a metrics.json object other than {split: {target: {metric: number or null}}}, or None."""
    for split, per_target in metrics.items():
        if not isinstance(per_target, dict):
            return f"{split} holds {per_target!r}, not a mapping of targets"
        for target, values in per_target.items():
            if not isinstance(values, dict):
                return f"{split}.{target} holds {values!r}, not a mapping of metrics"
            for name, value in values.items():
                if value is not None and _number(value) is None:
                    return f"{split}.{target}.{name} holds {value!r}, not a number"
    return None


def _read_object(path: Path) -> tuple[dict[str, Any], str | None]:
    """A JSON object file, or ({}, why not) when it is missing or damaged."""
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        return {}, None
    except (OSError, ValueError, RecursionError):
        return {}, f"damaged {path.name}"
    return (value, None) if isinstance(value, dict) else ({}, f"damaged {path.name}")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _duration(started: Any, ended: Any) -> float | None:
    try:
        return (datetime.fromisoformat(ended) - datetime.fromisoformat(started)).total_seconds()
    except (TypeError, ValueError):
        return None


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"

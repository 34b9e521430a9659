"""The `search` section of a config: what a sweep may change, and how a trial's values become a config.

Only pydantic here (no optuna, no torch), so config.py can hold the section and `dlrun --help` stays instant.
"""

from __future__ import annotations

import difflib
import json
import math
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

Scalar = (bool, int, float, str, type(None))  # what optuna stores as a categorical value as it is


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Dimension(_Section):
    """One searched key: exactly one of choice, uniform, log_uniform or integer."""

    choice: Optional[list[Any]] = Field(None, description="Values to choose from (any YAML value: 0.1, relu, [64, 32]).")
    uniform: Optional[tuple[float, float]] = Field(None, description="[low, high]: a float drawn uniformly.")
    log_uniform: Optional[tuple[float, float]] = Field(None, description="[low, high], low > 0: a float drawn uniformly in log space.")
    integer: Optional[tuple[int, int]] = Field(None, description="[low, high]: an integer, both ends included.")
    grid: Optional[list[float]] = Field(None, description="Points of a range tried by the grid sampler (a choice list is its own grid).")

    @model_validator(mode="after")
    def _one_kind_nonempty(self) -> "Dimension":
        given = [kind for kind in ("choice", "uniform", "log_uniform", "integer") if getattr(self, kind) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of choice, uniform, log_uniform, integer (got {', '.join(given) or 'none'})")
        if self.choice is not None:
            if not self.choice:
                raise ValueError("choice: the list is empty; give at least one value")
            if self.grid is not None:
                raise ValueError("grid: a choice list is already its own grid; remove grid")
            return self
        low, high = self.bounds
        if not low < high:
            raise ValueError(f"{self.kind}: the range [{low}, {high}] is empty; low must be below high")
        if self.kind == "log_uniform" and low <= 0:
            raise ValueError(f"log_uniform: low must be > 0 for a log scale, got {low}")
        if self.grid is not None:
            outside = [point for point in self.grid if not low <= point <= high]
            if not self.grid or outside:
                raise ValueError(f"grid: points must lie in [{low}, {high}] (outside: {outside or 'no points given'})")
            if self.kind == "integer" and any(point != int(point) for point in self.grid):
                raise ValueError(f"grid: an integer range needs whole-number points, got {self.grid}")
        return self

    @property
    def kind(self) -> str:
        return next(kind for kind in ("choice", "uniform", "log_uniform", "integer") if getattr(self, kind) is not None)

    @property
    def bounds(self) -> tuple[float, float]:
        return getattr(self, self.kind)

    @property
    def is_log(self) -> bool:
        return self.kind == "log_uniform"

    def extremes(self) -> list[Any]:
        """The values that must all make a valid config: every choice or grid point, both ends of a range."""
        if self.choice is not None:
            return list(self.choice)
        return [*self.bounds, *(self.grid or [])]

    def encoded_choices(self) -> list[Any]:
        """Choices as optuna can store them: a list or mapping choice becomes its JSON text ("[64, 32]")."""
        return [value if isinstance(value, Scalar) else json.dumps(value) for value in self.choice]

    def decode(self, value: Any) -> Any:
        """A value optuna proposed, back to the config value it stands for."""
        if self.choice is not None:
            return dict(zip(self.encoded_choices(), self.choice))[value]
        return int(value) if self.kind == "integer" else float(value)


class SearchConfig(_Section):
    space: dict[str, Dimension] = Field(
        description="Config key path -> {choice: [...]}, {uniform: [low, high]}, {log_uniform: [low, high]} or {integer: [low, high]}.",
        min_length=1,
    )
    objective: Optional[str] = Field(None, description="Validation metric to optimise, a val_* column of metrics.csv (default: train.early_stopping.metric).")
    direction: Literal["auto", "minimize", "maximize"] = Field("auto", description="auto: maximise accuracy/f1/precision/recall/auroc/r2, else minimise.")
    sampler: Literal["tpe", "random", "grid"] = Field("tpe", description="tpe | random | grid (grid tries every choice; ranges need grid points).")
    seed: Optional[int] = Field(None, ge=0, le=2**32 - 1, description="Seeds the sampler: the same sweep and seed propose the same trials (default: the config's seed).")
    trials: int = Field(20, ge=1, le=100_000, description="Trials in the whole study, over all workers and machines (grid: the whole grid unless set).")
    pruner: Literal["auto", "none", "median", "successive_halving"] = Field(
        "auto", description="Stops hopeless trials from their per-epoch objective: auto (median for tpe and random, none "
                            "for grid: a grid means every point), none, median or successive_halving.")
    prune_warmup_epochs: int = Field(5, ge=0, description="Epochs every trial trains before it may be pruned.")
    cv_folds: Optional[int] = Field(
        None, ge=2, le=20,
        description="Score each trial by its objective's mean over this many cross-validation folds instead of one validation split (no pruning; k times the training).",
    )

    @model_validator(mode="after")
    def _grid_needs_points(self) -> "SearchConfig":
        if self.sampler == "grid":
            pointless = [key for key, dim in self.space.items() if dim.choice is None and dim.grid is None]
            if pointless:
                raise ValueError(f"sampler grid needs a choice list or grid points for every key; add grid: [...] to {', '.join(pointless)}")
        return self

    @property
    def chosen_pruner(self) -> str:
        """The pruner a sweep uses: a grid search is pruned only when the config names a pruner."""
        if self.pruner == "auto":
            return "none" if self.sampler == "grid" else "median"
        return self.pruner

    def grid(self) -> dict[str, list[Any]]:
        """The grid sampler's points per key, as optuna stores them."""
        return {key: dim.encoded_choices() if dim.choice is not None else list(dim.grid) for key, dim in self.space.items()}

    def grid_size(self) -> int:
        return math.prod(len(points) for points in self.grid().values())


def key_problem(key: str, root: type[BaseModel]) -> str | None:
    """Why `key` (a dotted path such as optimizer.lr) is not a value the config has, or None when it is."""
    from dlrun.config.walk import key as find_key, keys

    section: type[BaseModel] | None = root
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if section is None:  # inside a mapping field (train.loss_weight.<target>): validating the config decides
            return None
        found = find_key(section, part)
        where = ".".join(parts[: depth + 1])
        if found is None or part == "search":
            allowed = [k.name for k in keys(section) if k.name != "search"]
            close = difflib.get_close_matches(part, allowed, n=1, cutoff=0.5)
            hint = f"; did you mean {'.'.join([*parts[:depth], close[0]])!r}?" if close else ""
            return f"{where!r} is not a config key{hint}; allowed here: {', '.join(allowed)}"
        if found.section is not None and depth == len(parts) - 1:
            return f"{where!r} is a section, not a value; search one of its keys ({', '.join(k.name for k in keys(found.section))})"
        if found.section is None and not found.per_user_key and depth < len(parts) - 1:
            return f"{where!r} is a value, not a section"
        section = found.section
    return None

"""The `tracking` section of a config: live tracking in TensorBoard and MLflow, both off unless asked for.

Only pydantic and the standard library here: the URI is checked when the config loads, and neither tensorboard nor
mlflow is imported until a run that asks for them trains (training/tracking.py).
"""

from __future__ import annotations

import re
from typing import Optional
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from dlrun.config.section import Section as _Section

# The stores MLflow's client logs to. Not a folder (`./mlruns`, file:): MLflow 3 refuses to write new runs there.
STORE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks")
MAX_EXPERIMENT_CHARS = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class MlflowConfig(_Section):
    uri: str = Field(
        description="MLflow tracking store: sqlite:///path/mlflow.db (relative) or sqlite:////abs/path/mlflow.db, "
                    "a database URL (postgresql://...), or http(s)://host:port of an MLflow server."
    )
    experiment: str = Field("dlrun", description="MLflow experiment the run is logged under (created when missing).")

    @field_validator("uri")
    @classmethod
    def _known_store(cls, value: str) -> str:
        value = value.strip()
        if not value or _CONTROL.search(value) or " " in value:
            raise ValueError(f"must be an MLflow tracking URI without spaces, e.g. sqlite:///mlflow.db, got {value!r}")
        parts = urlsplit(value)
        scheme = parts.scheme.lower().split("+")[0]  # postgresql+psycopg: a database with its driver
        if len(scheme) <= 1 or scheme == "file":  # no scheme (or a Windows drive letter): a folder
            raise ValueError(f"{value!r} is a folder (MLflow's file store), where MLflow 3 no longer writes new runs; "
                             "use a database file such as sqlite:///mlflow.db")
        if scheme not in STORE_SCHEMES:
            raise ValueError(f"{parts.scheme}: is not a tracking store MLflow knows; use one of "
                             f"{', '.join(s + ':' for s in STORE_SCHEMES)}, got {value!r}")
        if scheme == "sqlite" and (not value.lower().startswith("sqlite:///") or len(value) == len("sqlite:///")):
            raise ValueError(f"a SQLite store is sqlite:///relative/path.db or sqlite:////absolute/path.db, got {value!r}")
        if scheme in ("http", "https") and not parts.hostname:
            raise ValueError(f"an MLflow server URI needs a host, e.g. http://localhost:5000, got {value!r}")
        return value

    @field_validator("experiment")
    @classmethod
    def _usable_name(cls, value: str) -> str:
        value = value.strip()
        if not value or _CONTROL.search(value) or len(value) > MAX_EXPERIMENT_CHARS:
            raise ValueError(f"must be a name of 1 to {MAX_EXPERIMENT_CHARS} printable characters, got {value!r:.80}")
        return value


class TrackingConfig(_Section):
    tensorboard: bool = Field(
        False, description="Write TensorBoard event files to RUN/tensorboard/: every metrics.csv column per epoch, "
                           "the config as hparams with the final metrics (needs the `track` extra)."
    )
    mlflow: Optional[MlflowConfig] = Field(
        None, description="Log params, per-epoch metrics and the run's files to an MLflow store (needs the `track` "
                          "extra); null: off. A store that fails is a warning in run.json, never a failed run."
    )

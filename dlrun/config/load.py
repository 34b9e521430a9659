"""A config file (or a run's config.yaml) and `--set` overrides -> one validated, read-only Config."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from dlrun.config.messages import describe_validation_errors
from dlrun.config.schema import MAX_NAME_CHARS, Config
from dlrun.config.yaml_load import DuplicateKeyError, YamlLimitError, load_yaml
from dlrun.core.errors import ConfigError


def load_config(path: str | Path, overrides: list[str] = (), device: str | None = None) -> Config:
    """Read a YAML config, apply `key.path=value` overrides, and validate it; raises ConfigError."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:  # a folder, no permission, a symlink loop (ELOOP)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigError(f"cannot read config file {path}: {reason}") from None
    raw = _parse_yaml(text, str(path))
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys, got {type(raw).__name__}")
    # A config without a name is named after its file, so runs/ stays readable.
    raw.setdefault("name", re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem)[:MAX_NAME_CHARS] or "run")
    for override in overrides:
        _apply_override(raw, override)
    if device is not None:
        raw["device"] = device
    return validate_config(raw, source=str(path))


def _parse_yaml(text: str, source: str) -> Any:
    """YAML text as data, with duplicated keys and runaway expansion (alias bombs) refused; raises ConfigError."""
    try:
        return load_yaml(text)
    except (DuplicateKeyError, YamlLimitError) as exc:
        raise ConfigError(f"{source} is not a usable config: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from None


def validate_config(raw: dict[str, Any], source: str = "config") -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source} is invalid:\n  " + "\n  ".join(describe_validation_errors(exc, Config))) from None


def _apply_override(raw: dict[str, Any], override: str) -> None:
    key_path, sep, value_text = override.partition("=")
    if not sep or not key_path.strip():
        raise ConfigError(f"--set expects key.path=value, got {override!r}")
    value = _parse_yaml(value_text, f"--set {override!r}: the value")
    if not all(key_path.strip().split(".")):
        raise ConfigError(f"--set: empty key in {key_path.strip()!r}")
    set_key(raw, key_path.strip(), value, f"--set {override!r}")


def set_key(raw: dict[str, Any], key_path: str, value: Any, source: str) -> None:
    """raw[a][b][c] = value for "a.b.c", creating sections on the way; shared by --set and sweep trials."""
    keys = key_path.split(".")
    node = raw
    for depth, key in enumerate(keys[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            where = ".".join(keys[: depth + 1])
            raise ConfigError(f"{source}: {where} is a value, not a section")
        node = child
    node[keys[-1]] = value

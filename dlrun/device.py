"""Turning the config's device string into a torch.device that exists on this machine."""

from __future__ import annotations

import torch

from dlrun.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """auto picks the first GPU when there is one; asking for a GPU that is not there is a config error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {name!r} was requested but no CUDA GPU is available; use cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device: {name!r} does not exist; this machine has {torch.cuda.device_count()} GPU(s)")
    return device

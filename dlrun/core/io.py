"""Atomic file writes: a reader never sees half a file, a crash never leaves one."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from dlrun.core import faults


def write_atomic(path: Path, write: Callable[[Any], None], mode: str = "w", durable: bool = True) -> None:
    """Call `write(fh)` on a temp file beside `path`, then rename it over `path`.

    The rename alone keeps readers and crashes from seeing half a file; `durable` also fsyncs so the file survives a
    power cut. Files rewritten every epoch skip that (it costs milliseconds), as the next epoch rewrites them anyway.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes the file owner-only; give it ordinary permissions
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        faults.reached(path, "before")  # test-only: DLRUN_TEST_KILL_AT may kill the process here (core/faults.py)
        os.replace(tmp, path)
        faults.reached(path, "after")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def flush_to_disk(path: Path) -> None:
    """fsync a file written with durable=False, once its last version is in place."""
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: Path, text: str) -> None:
    write_atomic(path, lambda fh: fh.write(text))


def write_json(path: Path, obj: Any) -> None:
    """Write strict JSON: NaN and infinities (an undefined metric) become null."""
    write_text(path, json.dumps(_finite(obj), indent=2, allow_nan=False, default=_json_default) + "\n")


def write_csv(path: Path, frame, durable: bool = True) -> None:
    """Write a pandas DataFrame as CSV without its index."""
    write_atomic(path, lambda fh: frame.to_csv(fh, index=False), mode="w", durable=durable)


def read_json(path: Path) -> Any:
    with open(path) as fh:
        return json.load(fh)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: _finite(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(value) for value in obj]
    return obj


def _json_default(obj: Any) -> Any:
    # numpy scalars reach here from pandas/torch results; keep them as plain numbers.
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")

"""Atomic file writes: a reader never sees half a file, a crash never leaves one."""

from __future__ import annotations

import errno
import json
import math
import os
import secrets
from pathlib import Path
from typing import Any, Callable

from dlrun.core import faults


def write_atomic(path: Path, write: Callable[[Any], None], mode: str = "w", durable: bool = True) -> None:
    """Call `write(fh)` on a temp file beside `path`, then rename it over `path`.

    The rename alone keeps readers and crashes from seeing half a file; `durable` also fsyncs the file and then its
    directory (which holds the rename), so the new file survives a power cut. Files rewritten every epoch skip that (it
    costs milliseconds), as the next epoch rewrites them anyway.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, fd = _create_temp(path)
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        faults.reached(path, "before")  # test-only: DLRUN_TEST_KILL_AT may kill the process here (core/faults.py)
        os.replace(tmp, path)
        faults.reached(path, "after")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_directory(path.parent)


def flush_to_disk(path: Path) -> None:
    """fsync a file written with durable=False, once its last version is in place, and the rename that put it there."""
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())
    _fsync_directory(Path(path).parent)


def _create_temp(path: Path) -> tuple[Path, int]:
    """A new, empty temp file beside `path` and its descriptor open for writing.

    Created with mode 0o666 so the kernel applies the umask exactly as for any file this process makes: the run's
    files get the user's ordinary permissions. (tempfile.mkstemp creates 0o600, and widening that afterwards needs the
    umask, which can only be read by setting it: a process-wide change that races other threads' file creation.)
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return tmp, os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue  # a name left by a crash or taken by another writer: draw another
    raise FileExistsError(f"no free temp file name beside {path}")


def _fsync_directory(directory: Path) -> None:
    """Make a rename inside `directory` durable. Where directories cannot be opened or fsynced (Windows, some network
    file systems) there is nothing more to do."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


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

"""Atomic file writes: a reader never sees half a file, a crash never leaves one."""

from __future__ import annotations

import errno
import functools
import json
import math
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable

# The write failed because the file system is full or read-only: the user's machine, not dlrun, must change.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def _names_the_file(write: Callable[..., None]) -> Callable[..., None]:
    """An OSError from a write names the file being written, not its temp file or nothing (a full disk fails in
    fh.write, which names no file), so the one exit mapping (cli/exits.py) can say which file did not fit."""
    @functools.wraps(write)
    def named(path: Path, *args: Any, **kwargs: Any) -> None:
        try:
            write(path, *args, **kwargs)
        except OSError as exc:
            if exc.filename is not None and not Path(exc.filename).name.startswith(f".{Path(path).name}."):
                raise  # a parent folder that is a file, say: its own name is the useful one
            raise type(exc)(exc.errno, exc.strerror or str(exc), str(path)) from exc
    return named


@_names_the_file
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
        os.replace(tmp, path)
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
    """JSON from a file; nesting too deep to read (a crafted file) is a ValueError like any other damage."""
    with open(path) as fh:
        try:
            return json.load(fh)
        except RecursionError:
            raise ValueError(f"{path} is nested too deeply to be a dlrun file") from None


class NotRegularFileError(OSError):
    """An output path that exists and is a device, fifo or socket: never replaced by a regular file."""


def path_to_replace(path: Path) -> Path:
    """The file a write to `path` should replace. A symlink is followed to its target, so the link stays a link and the
    target gets the new content. A path that exists but is not a regular file raises, as replacing it with a file
    (write_atomic's rename) would destroy it: IsADirectoryError for a folder, NotRegularFileError for /dev/null or a
    fifo."""
    target = Path(os.path.realpath(path))
    try:
        mode = target.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):  # nothing there yet; write_atomic reports a file in the way
        return target
    if not stat.S_ISREG(mode):
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        raise NotRegularFileError(errno.EEXIST, "not a regular file: a device, fifo or socket is never replaced", str(path))
    return target


def overwrite_in_place(path: Path, text: str) -> bool:
    """Last resort when even a small temp file does not fit (a full disk): rewrite an existing file in the blocks it
    already has, when `text` is no longer than it. Not atomic; returns whether it was done."""
    data = text.encode()
    try:
        with open(path, "r+b") as fh:
            if len(data) > os.fstat(fh.fileno()).st_size:
                return False
            fh.write(data)
            fh.truncate()
    except OSError:
        return False
    return True


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

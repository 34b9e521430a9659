"""Atomic file writes: a reader never sees half a file, a crash never leaves one."""

from __future__ import annotations

import errno
import functools
import json
import math
import os
import secrets
import stat
from pathlib import Path
from typing import Any, Callable

from dlrun.core import faults

# The write failed because the file system is full or over quota: the user's machine, not dlrun, must change.
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

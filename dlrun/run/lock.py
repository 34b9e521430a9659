"""One process trains in a run directory at a time: an advisory lock (fcntl.flock) on run.lock.

The kernel drops the lock when its holder dies however it dies (kill -9 included), so a stale lock never blocks a
`--resume`. The file names its holder for the message the next process shows, and is removed when the holder ends.
"""

from __future__ import annotations

import fcntl
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from dlrun.core.errors import RunError
from dlrun.run import layout


@contextmanager
def hold_run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run directory's lock for the `with` block; a RunError naming the holder when another process has it."""
    path = Path(run_dir) / layout.LOCK
    while True:
        # An OSError here (a read-only or full disk, no permission) names the lock file: cli/exits.py words it.
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise RunError(f"{run_dir} is already being trained by {holder}; wait for it to end, or stop it first") from None
        # The holder before us may have removed the file between our open and our lock: then we hold a lock on a
        # file nobody else will open. Start over on the file now at the path.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode())
        except OSError as exc:  # a full disk: os.write names no file, the message must
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        yield
    finally:
        Path(path).unlink(missing_ok=True)  # before the unlock: nobody can lock a file that is gone from the path
        os.close(fd)


def is_held(run_dir: Path) -> bool:
    """Whether a live process holds the run's lock now. A run whose run.json says `running` but whose lock nobody
    holds was killed (kill -9, a power cut, a lost machine): `dlrun runs` lists it as lost."""
    path = Path(run_dir) / layout.LOCK
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # no lock file: its holder removed it on the way out, or never got to write one
        return False
    try:
        # A shared lock, dropped at once: it only fails while a trainer holds the exclusive one.
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the probe's lock
    return False

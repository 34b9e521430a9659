"""Small file systems for fault tests: a tmpfs of a given size (full disks) or read-only, unmounted afterwards.

Mounting needs root (CI runs as root); elsewhere the tests that need it are skipped with the reason.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import dlrun
from conftest import FAST, InterruptAfter, merge
from dlrun.config.load import validate_config


class SmallDisks:
    def __init__(self, root: Path):
        self.root = root
        self.mounted: list[Path] = []

    def mount(self, size: str = "64k") -> Path:
        """A fresh tmpfs of `size` (64k, 1m, ...) under the test's tmp_path."""
        where = self.root / f"disk{len(self.mounted)}"
        where.mkdir()
        if shutil.which("mount") is None:
            pytest.skip("no mount command: the small-disk tests need a tmpfs mount (root, as in CI)")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'mount failed'}); needs root, as in CI")
        self.mounted.append(where)
        return where

    def interrupted_run(self, csv: Path, size: str) -> Path:
        """A regression run on `csv` (target price) stopped by Ctrl-C after epoch 2, copied onto a fresh tmpfs of
        `size`: a run with something left to resume, report and predict with, on a disk the test then spoils."""
        cfg = validate_config(merge(FAST, {"name": "houses", "data": {"path": str(csv), "target": "price"},
                                           "train": {"epochs": 4, "early_stopping": None}}))
        with pytest.raises(KeyboardInterrupt):
            dlrun.train(cfg, self.root / "runs", callbacks=[InterruptAfter(2)])
        interrupted = next((self.root / "runs").iterdir())
        return Path(shutil.copytree(interrupted, self.mount(size) / interrupted.name))

    def read_only(self, where: Path) -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True, capture_output=True)

    def unmount_all(self) -> None:
        for where in reversed(self.mounted):
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(disk: Path) -> None:
    """Write filler files until the disk has no byte left (unbuffered: each write reaches the file system)."""
    for name, piece in (("filler", b"\0" * 1024), ("filler2", b"\0")):
        try:
            with open(disk / name, "wb", buffering=0) as fh:
                while True:
                    fh.write(piece)
        except OSError:
            pass


@pytest.fixture
def small_disks(tmp_path: Path):
    disks = SmallDisks(tmp_path)
    yield disks
    disks.unmount_all()

"""Atomic writes: a reader never sees half a file, a crash never leaves a temp file behind."""

from __future__ import annotations

import json
import math
import os
import stat

import numpy as np
import pandas as pd
import pytest

from dlrun.core.io import flush_to_disk, read_json, write_atomic, write_csv, write_json, write_text


def test_atomic_write_leaves_no_temp_files(tmp_path):
    write_text(tmp_path / "a.txt", "hello")
    write_json(tmp_path / "b.json", {"x": 1})
    write_csv(tmp_path / "c.csv", pd.DataFrame({"x": [1, 2]}))
    write_text(tmp_path / "a.txt", "replaced")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.txt", "b.json", "c.csv"]
    assert (tmp_path / "a.txt").read_text() == "replaced"


def test_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "metrics.json"
    write_text(path, "old")

    def half_then_crash(fh):
        fh.write("half a fi")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        write_atomic(path, half_then_crash)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_atomic_write_creates_parent_directories(tmp_path):
    write_text(tmp_path / "deep" / "er" / "file.txt", "x")
    assert (tmp_path / "deep" / "er" / "file.txt").read_text() == "x"


def test_atomic_binary_write(tmp_path):
    write_atomic(tmp_path / "blob.bin", lambda fh: fh.write(b"\x00\x01\xff"), mode="wb")
    assert (tmp_path / "blob.bin").read_bytes() == b"\x00\x01\xff"


def test_atomically_written_files_get_ordinary_permissions(tmp_path):
    # A run directory is shared and served; its files should be as readable as any file this process creates
    # (the umask decides), not private like the temp file they were born as.
    write_text(tmp_path / "atomic.txt", "x")
    (tmp_path / "plain.txt").write_text("x")
    atomic, plain = (oct(stat.S_IMODE(os.stat(tmp_path / name).st_mode)) for name in ("atomic.txt", "plain.txt"))
    assert atomic == plain


def test_write_json_is_strict_json_with_nan_as_null(tmp_path):
    path = tmp_path / "m.json"
    write_json(path, {"auroc": float("nan"), "nested": {"r2": [float("inf"), 0.5]}, "n": np.int64(3), "v": np.float32(1.5)})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"auroc": None, "nested": {"r2": [None, 0.5]}, "n": 3, "v": 1.5}
    assert read_json(path) == json.loads(text)


def test_write_csv_has_no_index_column(tmp_path):
    frame = pd.DataFrame({"a": [1.5, math.pi], "b": ["x", "y"]})
    write_csv(tmp_path / "f.csv", frame)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "f.csv"), frame)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_atomic_write_takes_its_mode_from_the_umask_without_setting_it(tmp_path, monkeypatch, mask):
    # The umask is process-wide: setting it (even to read it) races every other thread that creates a file.
    previous = os.umask(mask)
    try:
        def umask_forbidden(_):
            raise AssertionError("write_atomic changed the process umask")

        monkeypatch.setattr(os, "umask", umask_forbidden)
        write_text(tmp_path / "atomic.txt", "x")
    finally:
        monkeypatch.undo()
        os.umask(previous)
    assert stat.S_IMODE(os.stat(tmp_path / "atomic.txt").st_mode) == 0o666 & ~mask


def fsynced_kinds(monkeypatch) -> list[str]:
    """Record what each os.fsync call syncs: "file" or "dir"."""
    kinds, real_fsync = [], os.fsync

    def recording_fsync(fd):
        kinds.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    return kinds


def test_durable_write_fsyncs_the_file_then_the_directory_holding_the_rename(tmp_path, monkeypatch):
    kinds = fsynced_kinds(monkeypatch)
    write_text(tmp_path / "run.json", "{}")
    assert kinds == ["file", "dir"]


def test_fast_write_fsyncs_nothing_until_flushed(tmp_path, monkeypatch):
    kinds = fsynced_kinds(monkeypatch)
    write_csv(tmp_path / "metrics.csv", pd.DataFrame({"x": [1]}), durable=False)
    assert kinds == []
    flush_to_disk(tmp_path / "metrics.csv")
    assert kinds == ["file", "dir"]


def test_atomic_write_skips_a_temp_name_left_behind_by_a_crash(tmp_path, monkeypatch):
    import secrets

    draws = iter(["00000000", "11111111"])
    monkeypatch.setattr(secrets, "token_hex", lambda n: next(draws))
    (tmp_path / ".a.txt.00000000.tmp").write_text("from a crashed writer")
    write_text(tmp_path / "a.txt", "new")
    assert (tmp_path / "a.txt").read_text() == "new"
    assert (tmp_path / ".a.txt.00000000.tmp").read_text() == "from a crashed writer"

"""A table read in chunks instead of whole (data.in_memory: false, or auto for a table too large for memory).

- Which split a row is in comes from a seeded hash of its position in the table (or from data.split.column): the same
  in every pass over the data and in every process, without holding any per-row state. Fractions are not stratified:
  each split gets its fraction of the rows up to binomial noise (sd sqrt(f(1-f)/n)).
- A uniform sample of sample_rows rows (the rows with the smallest seeded hash keys, so it is the same sample in
  every pass) decides column roles and fits what needs order statistics (medians, quantiles, robust scaling, bins).
- Chunks are cleaned with the fitted column decisions exactly as predict reads new rows (clean.read_columns).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd
import torch

from dlrun.config.schema import DataConfig
from dlrun.core.errors import DataError
from dlrun.data.chunks import table_chunks
from dlrun.data.clean import read_columns
from dlrun.data.columns import ColumnDecision
from dlrun.data.load import resolve_targets, used_columns
from dlrun.data.splits import SPLITS
from dlrun.data.preprocess import Preprocessor
from dlrun.data.sources import n_rows_and_columns
from dlrun.data.tensors import Split

SPLIT_SALT, SAMPLE_SALT = 0x5EED_0001, 0x5EED_0002  # one hash stream per use, so the sample is not the val split
TENSOR_BYTES = 4  # float32 per encoded cell
RAM_SHARE = 16  # default budget: RAM / 16, since loading holds the frame, its cleaned copy and the tensors at once
_GOLDEN, _MIX_1, _MIX_2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def machine_ram_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_budget_bytes(cfg: DataConfig) -> int:
    return int(cfg.memory_budget * 2**30) if cfg.memory_budget is not None else machine_ram_bytes() // RAM_SHARE


def estimated_bytes(cfg: DataConfig) -> int:
    """The table as float32 tensors, one cell per column (from the Parquet footer or the CSV's size): a lower bound
    that one-hot columns exceed, cheap enough to decide before reading a row."""
    n_rows, n_columns = n_rows_and_columns(cfg.path)
    return n_rows * n_columns * TENSOR_BYTES


def streams(cfg: DataConfig) -> bool:
    """Whether the run reads its table in chunks: data.in_memory false, or auto with a table over the budget.
    Built-in and synthetic data are always in memory."""
    if cfg.path is None or cfg.in_memory is True:
        return False
    return cfg.in_memory is False or estimated_bytes(cfg) > memory_budget_bytes(cfg)


def row_hash(positions: np.ndarray, seed: int, salt: int) -> np.ndarray:
    """(n,) uniform floats in [0, 1) from the rows' positions in the table: splitmix64 of position and seed."""
    key = _mix(np.array([seed * 1_000_003 + salt], dtype=np.uint64))[0]
    bits = _mix(positions.astype(np.uint64) ^ key)
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _mix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps around, as the hash intends
        x = x + _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * _MIX_1
        x = (x ^ (x >> np.uint64(27))) * _MIX_2
        return x ^ (x >> np.uint64(31))


def hash_split(positions: np.ndarray, seed: int, val: float, test: float) -> np.ndarray:
    """(n,) "train" | "val" | "test" per row position: val below `val`, test up to val + test, train above."""
    u = row_hash(positions, seed, SPLIT_SALT)
    return np.where(u < val, "val", np.where(u < val + test, "test", "train")).astype(object)


@dataclass
class Chunk:
    """Rows of one chunk that have every target: as read, cleaned by the column decisions, and their split."""

    raw: pd.DataFrame
    cleaned: pd.DataFrame
    split: np.ndarray  # (n_rows,) "train" | "val" | "test"


class StreamedTable:
    """The table behind data.path, read chunk by chunk; `decisions` are set once the sample has decided them."""

    def __init__(self, cfg: DataConfig, seed: int, decisions: dict[str, ColumnDecision] | None = None):
        self.cfg, self.seed = cfg, seed
        self.targets, _ = resolve_targets(cfg)
        self.decisions = decisions or {}

    def raw_chunks(self) -> Iterator[pd.DataFrame]:
        """Chunks as read (tokens kept as text), the index being each row's position in the table."""
        return table_chunks(self.cfg.path, self.cfg.stream.chunk_rows, keep_tokens=True, columns=used_columns(self.cfg))

    def sample(self) -> pd.DataFrame:
        """A uniform sample of the rows as read: the sample_rows rows with the smallest seeded keys, in table order."""
        size, kept, keys = self.cfg.stream.sample_rows, None, np.empty(0)
        for raw in self.raw_chunks():
            chunk_keys = row_hash(raw.index.to_numpy(), self.seed, SAMPLE_SALT)
            if kept is not None and len(kept) >= size:  # only rows below the current cut can enter
                below = chunk_keys < keys.max()
                raw, chunk_keys = raw.loc[below], chunk_keys[below]
            kept = raw if kept is None else pd.concat([kept, raw])
            keys = np.concatenate([keys, chunk_keys])
            if len(kept) > size:
                keep = np.sort(np.argpartition(keys, size)[:size])
                kept, keys = kept.iloc[keep], keys[keep]
        if kept is None:
            raise DataError(f"{self.cfg.path} has no data rows")
        return kept

    def split_of(self, cleaned: pd.DataFrame) -> np.ndarray:
        if self.cfg.split.column is None:
            return hash_split(cleaned.index.to_numpy(), self.seed, self.cfg.split.val, self.cfg.split.test)
        values = cleaned[self.cfg.split.column].astype(str).str.strip().str.lower().to_numpy()
        bad = sorted(set(values) - set(SPLITS))
        if bad:
            raise DataError(f"data.split.column {self.cfg.split.column!r} holds {bad[:5]}; allowed values are train, val, test")
        return values.astype(object)

    def chunks(self, only: str | None = None) -> Iterator[Chunk]:
        """Every chunk cleaned, without the rows that lack a target, with each row's split; `only` keeps one split's
        rows (dropped before cleaning when the split comes from the hash)."""
        for raw in self.raw_chunks():
            if only is not None and self.cfg.split.column is None:
                raw = raw.loc[hash_split(raw.index.to_numpy(), self.seed, self.cfg.split.val, self.cfg.split.test) == only]
                if not len(raw):
                    continue
            cleaned, _ = read_columns(raw, self.decisions)
            has_target = cleaned[self.targets].notna().all(axis=1).to_numpy()
            if not has_target.all():
                raw, cleaned = raw.loc[has_target], cleaned.loc[has_target]
            if len(cleaned):
                yield Chunk(raw, cleaned, self.split_of(cleaned))

    def split_frames(self, name: str) -> Iterator[pd.DataFrame]:
        """The cleaned rows of one split, chunk by chunk."""
        for chunk in self.chunks(only=name):
            mask = chunk.split == name
            if mask.any():
                yield chunk.cleaned.loc[mask]

    def split_tensors(self, name: str, prep: Preprocessor, device: torch.device) -> Iterator[Split]:
        """One split's rows as tensors on the device, a chunk at a time (pinned and copied without blocking on CUDA,
        so the next chunk is read while the GPU works)."""
        for frame in self.split_frames(name):
            X = torch.from_numpy(prep.transform_features(frame))
            y = {t: torch.from_numpy(v) for t, v in prep.transform_targets(frame).items()}
            if device.type == "cuda":
                X, y = X.pin_memory(), {t: v.pin_memory() for t, v in y.items()}
            yield Split(X.to(device, non_blocking=True), {t: v.to(device, non_blocking=True) for t, v in y.items()})

"""The `data.split` section (fractions, a split column, groups, time order, a cv fold) and `data.stream` (how a
table larger than memory is read)."""

from __future__ import annotations

from typing import Optional

from pydantic import Field, model_validator

from dlrun.config.section import Section as _Section


class FoldConfig(_Section):
    k: int = Field(5, ge=2, le=100, description="Folds the non-test rows are cut into.")
    index: int = Field(1, ge=1, le=100, description="The fold this run validates on (1..k); the others train.")
    repeat: int = Field(0, ge=0, le=1000, description="Which repetition of the k folds (each reshuffles the rows into folds).")
    split_seed: Optional[int] = Field(
        None, ge=0, le=2**63 - 1,
        description="Seeds the test split and the folds instead of `seed`, which then seeds only the weights, shuffling and dropout (each fold model starts differently; null: `seed`).",
    )

    @model_validator(mode="after")
    def _index_in_range(self) -> "FoldConfig":
        if self.index > self.k:
            raise ValueError(f"data.split.fold.index must be between 1 and k={self.k}, got {self.index}")
        return self


class SplitConfig(_Section):
    train: float = Field(0.7, gt=0, lt=1, description="Fraction of rows used to fit the model.")
    val: float = Field(0.15, gt=0, lt=1, description="Fraction used for early stopping and model choice.")
    test: float = Field(0.15, gt=0, lt=1, description="Fraction held out for the final score.")
    column: Optional[str] = Field(
        None, description="Instead of fractions: a column whose values are train / val / test per row."
    )
    group: Optional[str] = Field(
        None, description="A column of group ids (a patient, a customer): rows of one group never fall in two splits or two cv folds."
    )
    order: Optional[str] = Field(
        None, description="A column of times (numbers or dates): val and test are the latest rows, and each cv fold validates on rows later than it trains on."
    )
    fold: Optional[FoldConfig] = Field(
        None, description="Set by `dlrun cv` on each fold's run: the non-test rows are cut into k folds and fold `index` validates."
    )

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> "SplitConfig":
        total = self.train + self.val + self.test
        if self.column is None and abs(total - 1.0) > 1e-6:
            raise ValueError(f"split fractions train + val + test must sum to 1, got {total:g}")
        if self.group is not None and self.order is not None:
            raise ValueError("data.split.group and data.split.order cannot both be set: give the one that matters")
        if self.column is not None and (self.group or self.order):
            raise ValueError("data.split.column already says each row's split: remove data.split.group / data.split.order")
        return self


class StreamConfig(_Section):
    chunk_rows: int = Field(65_536, ge=1_000, le=10_000_000,
                            description="Streaming: rows read, cleaned and encoded at a time (Parquet row groups in batches).")
    shuffle_buffer: int = Field(262_144, ge=1, le=100_000_000,
                                description="Streaming: training rows held and drawn from at random (a seeded shuffle buffer); "
                                            "1 keeps the table's order.")
    sample_rows: int = Field(100_000, ge=1_000, le=10_000_000,
                             description="Streaming: rows of the seeded uniform sample that decides column roles and fits "
                                         "medians, quantiles and bins (rank error about 1/sqrt(sample_rows)).")

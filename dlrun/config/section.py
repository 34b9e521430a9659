"""The base of every config section: unknown keys refused, values frozen once loaded, no infinities or NaNs."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    # allow_inf_nan=False: `.inf` or `.nan` in any float field (train.loss_weight, model.init_std) would train a NaN run
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

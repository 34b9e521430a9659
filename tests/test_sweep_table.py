"""Issue 17 item 1, the sweep's trials table: parameters named by the last part of their key (more only where two
share it), the trial number and objective never cut at 80 columns, and trials beyond the table counted."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from dlrun.cli.render import params_text
from dlrun.cli.sweep_table import MAX_ROWS, short_names, trials_table
from dlrun.metrics.names import format_value


@pytest.mark.parametrize("keys, expected", [
    (["optimizer.lr", "optimizer.momentum"], ["lr", "momentum"]),
    (["optimizer.lr", "scheduler.lr", "model.hidden"], ["optimizer.lr", "scheduler.lr", "hidden"]),
    (["a.b.lr", "c.b.lr", "x.y"], ["a.b.lr", "c.b.lr", "y"]),
    (["seed"], ["seed"]),
])
def test_parameters_are_named_by_their_last_key_part_unless_two_share_it(keys, expected):
    assert list(short_names(keys).values()) == expected


def test_trial_lines_use_the_same_names():
    assert params_text({"optimizer.lr": 0.0031415926, "optimizer.momentum": 0.95, "model.hidden": [16, 8]}) == \
        "lr=0.003142, momentum=0.9500, hidden=[16, 8]"


def trials(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"trial": range(n), "state": ["complete"] * (n - 3) + ["pruned"] * 3,
                          "objective": rng.uniform(4, 7, n) * 1.000123456, "seconds": rng.uniform(0, 100, n),
                          "param:optimizer.lr": rng.uniform(1e-6, 1e-2, n), "param:optimizer.momentum": rng.uniform(0.85, 0.99, n),
                          "param:model.hidden": ["[128, 64]"] * n, "epochs": [57] * n, "run_dir": ["trials/x"] * n, "note": [""] * n})
    return frame.sort_values("objective").reset_index(drop=True)


@pytest.mark.parametrize("n", [6, MAX_ROWS + 7])
def test_every_trial_number_and_objective_is_whole_at_80_columns(n):
    frame = trials(n)
    table, left_out, n_more = trials_table(frame, 80)
    console = Console(width=80, file=io.StringIO())
    console.print(table)
    text = console.file.getvalue()
    assert max(map(len, text.splitlines())) <= 80 and "…" not in text
    header = text.splitlines()[2]
    assert all(name in header for name in ("trial", "objective", "lr", "momentum")) and "param:" not in header
    lines = [line.split("│") for line in text.splitlines() if line.startswith("│")]
    assert [int(cells[1]) for cells in lines] == list(frame["trial"][:MAX_ROWS])  # best first, one line each
    assert all(format_value(v) in text for v in frame["objective"][:MAX_ROWS])
    assert n_more == max(0, n - MAX_ROWS)
    assert set(left_out) <= {"seconds", "epochs", "hidden"}

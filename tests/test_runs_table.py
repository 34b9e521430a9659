"""Issue 17 item 1, `dlrun runs`: at 80 columns and in a pipe every run id and the value `--sort` ranks by are shown
whole; columns that do not fit are left out and named, never cut to `20261…`."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys

import pytest
from rich.console import Console

from conftest import REPO
from dlrun.cli.runs_table import runs_table
from dlrun.metrics.names import format_value
from dlrun.run.listing import list_runs, sort_key_value


@pytest.fixture
def many_runs(tmp_path, finished_runs):
    """Six copies of the two finished runs under long ids, as a week of experiments leaves them."""
    root = tmp_path / "runs"
    for index in range(3):
        for kind, run in finished_runs.items():
            shutil.copytree(run, root / f"20261201-2030{index:02d}-{kind}_with_a_long_name",
                            ignore=shutil.ignore_patterns("*.pt", "*.png", "report.html", "checkpoints", "plots"))
    return root


def render(table) -> str:
    console = Console(width=80, file=io.StringIO())
    console.print(table)
    return console.file.getvalue()


@pytest.mark.parametrize("sort", [None, "test_mae", "val_loss", "duration_s", "test_accuracy"])
def test_ids_and_sorted_values_are_whole_at_80_columns(many_runs, sort):
    rows = list_runs(many_runs, sort)
    table, left_out = runs_table(rows, sort, 80, "runs")
    text = render(table)
    assert max(map(len, text.splitlines())) <= 80
    assert "…" not in text
    for row in rows:
        assert row.id in text
        if sort and sort != "duration_s":
            assert f" {format_value(sort_key_value(row, sort))} " in text
    if sort and sort != "duration_s":
        assert sort in text.splitlines()[2]  # its own column, named by the key
    assert left_out, "these long ids cannot leave room for every column at 80"


def test_wide_terminal_shows_every_column(many_runs):
    table, left_out = runs_table(list_runs(many_runs), None, 200, "runs")
    assert left_out == []
    assert all(word in render_wide(table) for word in ("status", "best val", "test", "epochs", "duration", "data"))


def render_wide(table) -> str:
    console = Console(width=200, file=io.StringIO())
    console.print(table)
    return console.file.getvalue()


@pytest.mark.parametrize("columns", ["80", None])  # COLUMNS=80, and a plain pipe (rich then assumes 80)
def test_runs_command_in_a_pipe_keeps_ids_and_sorted_metric(many_runs, columns):
    env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    if columns:
        env["COLUMNS"] = columns
    result = subprocess.run([sys.executable, "-m", "dlrun", "runs", str(many_runs), "--sort", "test_mae"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "…" not in result.stdout
    for row in list_runs(many_runs, "test_mae"):
        assert row.id in result.stdout and format_value(sort_key_value(row, "test_mae")) in result.stdout
    ids = [line.split("│")[1].strip() for line in result.stdout.splitlines() if "│" in line and "2026" in line]
    assert ids == [row.id for row in list_runs(many_runs, "test_mae")]  # best first, one line each
    assert "left out to fit 80 columns:" in result.stderr and "--json" in result.stderr

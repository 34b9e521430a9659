"""Issue 17 items 1 and 5, `dlrun compare`: at 80 columns and in a pipe every run id and every value is shown whole
(ids as headers when they fit, else `run N` columns named above the tables, runs spread over several tables); with
--plot the runs' learning curves share one PNG."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys

import pytest
from rich.console import Console

from conftest import REPO
from test_plots import assert_no_text_overlaps
from dlrun.cli.compare_table import compare_tables
from dlrun.metrics.names import format_value
from dlrun.run.curves import compare_figure, learning_curves
from dlrun.run.listing import compare_runs

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def long_runs(tmp_path_factory, finished_runs):
    """Three copies of the finished classification run and one regression run, under long ids."""
    root = tmp_path_factory.mktemp("compare")
    runs = []
    for index, kind in enumerate(["classification"] * 3 + ["regression"]):
        runs.append(root / f"20261201-2030{index:02d}-{kind}_with_a_long_name")
        shutil.copytree(finished_runs[kind], runs[-1], ignore=shutil.ignore_patterns("*.pt", "*.png", "report.html"))
    return runs


def render(tables, width: int) -> str:
    console = Console(width=width, file=io.StringIO())
    for table in tables:
        console.print(table)
    return console.file.getvalue()


@pytest.mark.parametrize("n_runs", [2, 4])
def test_every_id_and_value_is_whole_at_80_columns(long_runs, n_runs):
    comparison = compare_runs(long_runs[:n_runs])
    legend, tables = compare_tables(comparison, 80)
    text = "\n".join(legend) + "\n" + render(tables, 80)
    assert max(map(len, text.splitlines())) <= 80 and "…" not in text
    for run in long_runs[:n_runs]:
        assert f": {run.name}" in text  # named whole, once, above the tables
    for key, values in comparison.metrics:
        assert key in text
        for value in values:
            assert format_value(value) in text


def test_ids_are_the_headers_when_they_fit(long_runs):
    legend, tables = compare_tables(compare_runs(long_runs[:2]), 250)
    assert legend == [] and len(tables) == 2
    assert [column.header for column in tables[1].columns][1:] == [run.name for run in long_runs[:2]]


def test_compare_command_in_a_pipe_and_its_learning_curves(long_runs, tmp_path):
    env = {**os.environ, "COLUMNS": "80"}  # piped, as in a script or `| less`
    png = tmp_path / "curves.png"
    result = subprocess.run([sys.executable, "-m", "dlrun", "compare", *map(str, long_runs), "--plot", str(png)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "…" not in result.stdout and max(map(len, result.stdout.splitlines())) <= 80
    assert all(run.name in result.stdout for run in long_runs)
    assert result.stdout.strip().splitlines()[-1] == str(png) and png.read_bytes().startswith(PNG)


def test_learning_curves_overlay_loss_and_the_monitored_metric_of_every_run(long_runs):
    curves = learning_curves(long_runs)
    # every run: train and validation loss; the first run's monitored metric (val_loss, so its first other metric,
    # here val_accuracy) for every run that records it: the three classification runs
    assert [(c.panel, c.label) for c in curves if c.run == long_runs[0].name] == [
        ("loss", f"{long_runs[0].name} train"), ("loss", f"{long_runs[0].name} val"), ("val_accuracy", long_runs[0].name)]
    assert sum(c.panel == "loss" for c in curves) == 8 and sum(c.panel == "val_accuracy" for c in curves) == 3
    fig = compare_figure(curves)
    loss_ax, metric_ax = fig.axes
    assert [line.get_label() for line in metric_ax.get_lines()] == [run.name for run in long_runs[:3]]
    assert len(loss_ax.get_lines()) == 8
    assert list(loss_ax.get_lines()[1].get_ydata()) == curves[1].values
    assert [text.get_text() for text in fig.legends[0].get_texts()] == [run.name for run in long_runs]
    assert_no_text_overlaps(fig)


def test_plot_path_must_be_a_png(long_runs, tmp_path):
    from dlrun.core.errors import ConfigError
    from dlrun.run.curves import plot_comparison

    with pytest.raises(ConfigError, match="must be a .png"):
        plot_comparison(long_runs[:2], long_runs[2])  # `--plot RUN` took a run directory as its path


def test_runs_that_do_not_fit_side_by_side_spread_over_several_tables(long_runs):
    comparison = compare_runs(long_runs * 3)  # twelve columns of values cannot share 80 characters
    legend, tables = compare_tables(comparison, 80)
    text = render(tables, 80)
    assert max(map(len, text.splitlines())) <= 80 and "…" not in text
    assert len(tables) > 2 and len(legend) == 12
    headers = [column.header for table in tables[-(len(tables) // 2):] for column in table.columns[1:]]
    assert headers == [f"run {n}" for n in range(1, 13)]  # every run once among the metrics tables, in order
    assert all(table.columns[0].header in ("config key", "metric") for table in tables)

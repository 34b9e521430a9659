"""explain.py: activation curves with autograd derivatives; dropout varies outputs in train mode only."""

from __future__ import annotations

import typing

import pytest
import torch

from dlrun.run.directory import open_run
from dlrun.config.schema import Activation
from dlrun.core.errors import ConfigError, RunError
from dlrun.probe.explain import explain_activations, explain_dropout
from dlrun.metrics.names import format_value

from conftest import run_cli_many
from test_plots import assert_valid_png


def test_activation_plot_covers_every_configurable_activation(tmp_path):
    result = explain_activations(tmp_path / "act.png")
    assert result.names == list(typing.get_args(Activation))
    assert_valid_png(result.path, min_width=800)
    assert result.max_gradient["relu"] == 1.0 and result.max_gradient["sigmoid"] == pytest.approx(0.25)
    assert result.max_gradient["tanh"] == pytest.approx(1.0) and result.max_gradient["gelu"] == pytest.approx(1.129, abs=1e-3)


def test_activation_slope_is_checked(tmp_path):
    with pytest.raises(ConfigError, match="--slope must be between 0 and 1"):
        explain_activations(tmp_path / "act.png", slope=2.0)


def test_dropout_varies_in_train_mode_and_is_fixed_in_eval_mode(finished_runs, tmp_path):
    rng_before = torch.get_rng_state()
    demo = explain_dropout(finished_runs["classification"], n_rows=5, n_passes=40, output=tmp_path / "d.png")
    assert torch.equal(torch.get_rng_state(), rng_before)  # seeded in a forked generator: the caller's is untouched
    assert demo.dropout == [0.3, 0.3] and demo.eval_repeatable and len(demo.rows) == 5
    assert any(row.train_std > 0 for row in demo.rows)
    assert all(row.train_min <= row.train_max and 0 <= row.eval_value <= 1 for row in demo.rows)
    assert_valid_png(demo.path)
    again = explain_dropout(finished_runs["classification"], n_rows=5, n_passes=40, output=tmp_path / "e.png")
    assert again.rows == demo.rows  # seeded: the same passes every time
    run = open_run(finished_runs["classification"])
    assert all(not module.training for module in run.model.modules())


def test_without_dropout_train_mode_changes_nothing(finished_runs, tmp_path):
    demo = explain_dropout(finished_runs["regression"], n_rows=3, n_passes=5, output=tmp_path / "d.png")
    assert demo.dropout == [0.0, 0.0] and "euros" in demo.quantity
    assert all(row.train_min == row.eval_value == row.train_max for row in demo.rows)


def test_explain_commands(finished_runs, tmp_path):
    run = finished_runs["classification"]
    results = run_cli_many({
        "activations": (["explain", "activations", "--output", tmp_path / "a.png"], None),
        "dropout": (["explain", "dropout", run, "--rows", "4", "--output", tmp_path / "d.png"], None),
    })
    assert results["activations"].returncode == 0 and results["activations"].stdout.strip() == str(tmp_path / "a.png")
    assert "sigmoid: gradient at most 0.25" in results["activations"].stderr
    dropout = results["dropout"]
    assert dropout.returncode == 0, dropout.stderr
    assert "eval mode" in dropout.stderr and "train mode: mean ± std over 30 passes" in dropout.stderr
    assert "two eval-mode passes were identical" in dropout.stderr and (tmp_path / "d.png").is_file()
    demo = explain_dropout(run, n_rows=4, n_passes=30, output=tmp_path / "same.png")  # same seed: the same numbers
    for row in demo.rows:
        assert f"{format_value(row.train_mean)} ± {format_value(row.train_std)}" in dropout.stderr
        assert format_value(row.eval_value) in dropout.stderr


def test_dropout_demo_checks_its_input(finished_runs, tmp_path):
    with pytest.raises(ConfigError, match="--passes 2..1000"):
        explain_dropout(finished_runs["classification"], n_passes=1)
    with pytest.raises(RunError, match="run directory not found"):
        explain_dropout(tmp_path / "absent")


def test_explain_figures_have_no_overlapping_text():
    import numpy as np

    from dlrun.probe.explain import activations_figure, dropout_figure
    from test_plots import assert_no_text_overlaps

    assert_no_text_overlaps(activations_figure()[0])
    passes = np.random.default_rng(0).normal(20, 1, (30, 8))
    assert_no_text_overlaps(dropout_figure(passes, passes.mean(axis=0), "predicted wages (dollars/hour)", [0.1, 0.1]))

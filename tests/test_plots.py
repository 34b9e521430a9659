"""plots.py: every picture is a valid PNG of sensible size, and each figure draws the numbers of the run's files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score, roc_curve

import dlrun
import dlrun.run.plots as plots
from dlrun.run import layout
from dlrun.config.load import validate_config

from conftest import FAST, merge


def assert_valid_png(path, min_width=400, min_height=250):
    """A real PNG, of a readable size, that is not one flat colour."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.width >= min_width and image.height >= min_height
        assert image.width <= 2000 and image.height <= 2000
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
        assert len(colours) > 20


def test_completed_runs_have_every_plot(finished_runs):
    classification, regression = finished_runs["classification"], finished_runs["regression"]
    assert sorted(p.name for p in (classification / "plots").glob("*.png")) == [
        "confusion_species.png", "diagnostics.png", "loss.png", "roc_species.png", "val_metrics.png"]
    assert sorted(p.name for p in (regression / "plots").glob("*.png")) == [
        "diagnostics.png", "loss.png", "regression_price.png", "val_metrics.png"]
    for path in [*(classification / "plots").glob("*.png"), *(regression / "plots").glob("*.png")]:
        assert_valid_png(path)


def test_loss_figure_draws_the_loss_lr_and_best_epoch(finished_runs):
    history = pd.read_csv(finished_runs["regression"] / "metrics.csv")
    fig = plots.loss_figure(history, {"price": "regression"}, best_epoch=3)
    ax, = fig.axes  # a constant learning rate takes no axis of its own: the title says it
    lines = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_allclose(lines["train loss"].get_ydata(), history["train_loss"])
    np.testing.assert_allclose(lines["validation loss"].get_ydata(), history["val_loss"])
    assert list(lines["best epoch 3"].get_xdata()) == [3, 3]
    assert ax.get_xlabel() == "epoch" and "MSE" in ax.get_ylabel()
    assert ax.get_title() == "Loss per epoch (learning rate 0.01 throughout)"

    scheduled = history.assign(lr=np.linspace(0.01, 0.001, len(history)))
    ax, lr_axis = plots.loss_figure(scheduled, {"price": "regression"}, best_epoch=3).axes
    np.testing.assert_allclose(lr_axis.get_lines()[0].get_ydata(), scheduled["lr"])
    assert lr_axis.get_ylabel() == "learning rate" and ax.get_title() == "Loss per epoch"


def test_val_metrics_figure_has_one_panel_per_metric_with_units(finished_runs):
    history = pd.read_csv(finished_runs["regression"] / "metrics.csv")
    fig = plots.val_metrics_figure(history, {"price": "euros"}, best_epoch=2)
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}
    assert set(panels) == {"mae", "rmse", "r2"}
    np.testing.assert_allclose(panels["rmse"].get_lines()[0].get_ydata(), history["val_rmse"])
    assert panels["mae"].get_ylabel() == "euros" and panels["r2"].get_ylabel() == ""


def test_confusion_figure_shows_counts_and_row_fractions(finished_runs):
    counts = plots.read_confusion(finished_runs["classification"] / "confusion_species.csv")
    fig = plots.confusion_figure(counts, "species")
    count_axis, fraction_axis = [ax for ax in fig.axes if ax.images]  # the other axes are colour bars
    np.testing.assert_array_equal(count_axis.images[0].get_array(), counts.to_numpy())
    fractions = counts.to_numpy() / counts.to_numpy().sum(axis=1, keepdims=True)
    np.testing.assert_allclose(fraction_axis.images[0].get_array(), fractions)
    assert [t.get_text() for t in count_axis.texts] == [str(n) for n in counts.to_numpy().ravel()]
    assert [t.get_text() for t in count_axis.get_yticklabels()] == list(counts.index)
    assert count_axis.get_xlabel() == "predicted class" and count_axis.get_ylabel() == "true class"


def test_roc_points_match_scikit_learn():
    rng = np.random.default_rng(0)
    positive = rng.random(200) < 0.3
    scores = np.round(rng.random(200) + positive * 0.4, 2)  # rounded: ties, as predicted probabilities have
    fpr, tpr, auc = plots.roc_points(scores, positive)
    expected_fpr, expected_tpr, _ = roc_curve(positive, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, expected_fpr)
    np.testing.assert_allclose(tpr, expected_tpr)
    assert auc == pytest.approx(roc_auc_score(positive, scores))


def test_roc_figure_draws_one_curve_per_class_with_its_auc(finished_runs):
    run = finished_runs["classification"]
    classes = plots.read_confusion(run / "confusion_species.csv").index
    fig = plots.roc_figure(run / "predictions.csv", "species", classes)
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert len(labels) == len(classes) + 1 and labels[-1] == "chance"
    rows = pd.read_csv(run / "predictions.csv")
    aucs = {name: roc_auc_score(rows["species"] == name, rows[f"species_proba_{name}"]) for name in classes}
    by_auc = sorted(classes, key=lambda name: -aucs[name])  # the legend lists the best separated class first
    assert labels[:-1] == [f"{name} (AUC {aucs[name]:.3f})" for name in by_auc]


def test_regression_figure_plots_test_rows_in_original_units(finished_runs):
    run = finished_runs["regression"]
    rows = pd.read_csv(run / "predictions.csv")
    fig = plots.regression_figure(run / "predictions.csv", "price", "euros")
    scatter, residuals = fig.axes
    np.testing.assert_allclose(scatter.collections[0].get_offsets(), rows[["price", "price_pred"]].to_numpy())
    np.testing.assert_allclose(residuals.collections[0].get_offsets()[:, 1], rows["price"] - rows["price_pred"])
    assert scatter.get_xlabel() == "true price (euros)" and residuals.get_ylabel() == "residual: true - predicted (euros)"


def test_diagnostics_figure_has_a_line_per_layer(finished_runs):
    frame = pd.read_csv(finished_runs["regression"] / "diagnostics.csv")
    fig = plots.diagnostics_figure(frame)
    grad_axis = fig.axes[0]
    assert [line.get_label() for line in grad_axis.get_lines()] == ["layer 1", "layer 2", "head price"]
    layer1 = frame[frame["layer"] == "layer 1"]
    np.testing.assert_allclose(grad_axis.get_lines()[0].get_ydata(), layer1["grad_norm"])


def test_plot_names_of_a_target_stay_inside_the_plots_folder():
    assert layout.plot_file("roc", "type") == "plots/roc_type.png"
    name = layout.plot_file("confusion", "a/../../b")
    assert name.startswith("plots/confusion_") and name.count("/") == 1 and ".." not in name


def test_a_failing_plot_is_a_warning_and_the_run_completes(tmp_path, regression_csv, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no ink")

    monkeypatch.setattr(plots, "loss_figure", broken)
    cfg = validate_config(merge(FAST, {"data": {"path": str(regression_csv), "target": "price"}, "report": True}))
    run = dlrun.train(cfg, tmp_path / "runs")
    info = json.loads((run.run_dir / "run.json").read_text())
    assert info["status"] == "completed"
    assert info["warnings"] == ["plot loss.png was not drawn (RuntimeError: no ink)"] == run.warnings
    assert not (run.run_dir / "plots" / "loss.png").exists()
    assert (run.run_dir / "plots" / "regression_price.png").is_file() and (run.run_dir / "report.html").is_file()
    assert "no ink" in (run.run_dir / "report.html").read_text()


def test_report_false_skips_plots_but_keeps_diagnostics_warnings(tmp_path, regression_csv):
    cfg = validate_config(merge(FAST, {"data": {"path": str(regression_csv), "target": "price"}, "report": False,
                                       "optimizer": {"lr": 1.0}}))
    run = dlrun.train(cfg, tmp_path / "runs")
    assert not (run.run_dir / "plots").exists() and not (run.run_dir / "report.html").exists()
    assert (run.run_dir / "diagnostics.csv").is_file()
    assert any("ReLU units never fire" in w for w in run.warnings)


def visible_texts(fig):
    """Every piece of text a reader sees, with its box in pixels, after drawing the figure as it is saved."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    texts = [*fig.texts, *(t for legend in fig.legends for t in legend.get_texts())]
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        texts += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label,
                  ax.xaxis.get_offset_text(), ax.yaxis.get_offset_text(), *ax.texts]
        texts += drawn_tick_labels(ax.xaxis, ax.get_xlim(), 0) + drawn_tick_labels(ax.yaxis, ax.get_ylim(), 1)
        if ax.get_legend():
            texts += ax.get_legend().get_texts()
    return [(t.get_text(), t.get_window_extent(renderer)) for t in texts if t.get_visible() and t.get_text().strip()]


def drawn_tick_labels(axis, limits, coordinate):
    """The tick labels matplotlib draws: those of a visible axis inside the view (it keeps a spare tick either side)."""
    if not axis.get_visible():
        return []
    low, high = sorted(limits)
    span = (high - low) * 1e-9
    return [t for t in axis.get_ticklabels(which="both") if low - span <= t.get_position()[coordinate] <= high + span]


def assert_no_text_overlaps(fig):
    boxes = visible_texts(fig)
    width, height = fig.canvas.get_width_height()
    for text, box in boxes:  # nothing cut off at the edges
        assert box.x0 >= -1 and box.y0 >= -1 and box.x1 <= width + 1 and box.y1 <= height + 1, (text, box, width, height)
    for i, (text_a, a) in enumerate(boxes):
        for text_b, b in boxes[i + 1:]:
            overlap_x = min(a.x1, b.x1) - max(a.x0, b.x0)
            overlap_y = min(a.y1, b.y1) - max(a.y0, b.y0)
            assert overlap_x <= 1 or overlap_y <= 1, f"{text_a!r} overlaps {text_b!r}"


def test_no_text_overlaps_or_is_cut_off_in_any_figure(finished_runs):
    classification, regression = finished_runs["classification"], finished_runs["regression"]
    history = pd.read_csv(regression / "metrics.csv")
    classes = plots.read_confusion(classification / "confusion_species.csv")
    figures = [
        plots.loss_figure(history, {"price": "regression"}, 3),
        plots.val_metrics_figure(pd.read_csv(classification / "metrics.csv"), {}, 3),
        plots.confusion_figure(classes, "species"),
        plots.roc_figure(classification / "predictions.csv", "species", classes.index),
        plots.regression_figure(regression / "predictions.csv", "price", "euros"),
        plots.diagnostics_figure(pd.read_csv(regression / "diagnostics.csv")),
    ]
    for fig in figures:
        assert_no_text_overlaps(fig)


def test_many_long_class_names_stay_readable():
    names = [f"class with a long name {k}" for k in range(12)]
    counts = pd.DataFrame(np.random.default_rng(0).integers(0, 30, (12, 12)), index=names, columns=names)
    assert_no_text_overlaps(plots.confusion_figure(counts, "kind"))


def test_the_overlap_check_sees_overlapping_text():
    fig = plots.new_figure()
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, "one label")
    ax.text(0.52, 0.5, "another label")
    with pytest.raises(AssertionError, match="'one label' overlaps 'another label'"):
        assert_no_text_overlaps(fig)


def test_a_hundred_classes_name_every_other_class_without_overlap():
    names = [f"species_{k:03d}" for k in range(120)]
    counts = pd.DataFrame(np.random.default_rng(0).integers(0, 5, (120, 120)), index=names, columns=names)
    fig = plots.confusion_figure(counts, "kind")
    assert_no_text_overlaps(fig)
    assert [label.get_text() for label in fig.axes[0].get_yticklabels()] == names[::2]


def test_roc_of_many_classes_names_only_the_highest_and_lowest_auc(tmp_path):
    rng = np.random.default_rng(0)
    names = [f"class_{k:02d}" for k in range(30)]
    truth = rng.integers(0, 30, 3000)
    proba = rng.dirichlet(np.ones(30), 3000)
    proba[np.arange(3000), truth] += np.linspace(0, 0.05, 30)[truth]  # class k separates better with k
    rows = pd.DataFrame(proba / proba.sum(axis=1, keepdims=True), columns=[f"kind_proba_{n}" for n in names])
    rows["kind"] = np.array(names)[truth]
    rows.to_csv(tmp_path / "predictions.csv", index=False)
    fig = plots.roc_figure(tmp_path / "predictions.csv", "kind", names)
    assert_no_text_overlaps(fig)
    legend = [text.get_text().split(" (")[0] for text in fig.axes[0].get_legend().get_texts()]
    by_auc = sorted(names, key=lambda n: -roc_auc_score(rows["kind"] == n, rows[f"kind_proba_{n}"]))
    assert legend == [*by_auc[:3], *by_auc[-3:], "chance"]
    assert by_auc[0] in names[20:] and by_auc[-1] in names[:10]
    assert len(fig.axes[0].lines) == 30 + 6 + 1  # every class faint, six named, the chance line

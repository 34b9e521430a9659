"""listing.py and `dlrun runs` / `dlrun compare`: rows from run.json and metrics.json, sorting, filters, JSON."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from dlrun.core.errors import RunError
from dlrun.run.listing import compare_runs, format_duration, list_runs, read_run_row
from dlrun.metrics.names import format_value

from conftest import REPO, run_cli_many


@pytest.fixture
def runs_dir(tmp_path, finished_runs):
    """A runs folder holding copies of the two finished runs (run.json and metrics.json are all a listing reads)."""
    root = tmp_path / "runs"
    for run in finished_runs.values():
        shutil.copytree(run, root / run.name, ignore=shutil.ignore_patterns("*.pt", "*.png", "report.html"))
    return root


def test_rows_come_from_run_json_and_metrics_json(runs_dir, finished_runs):
    rows = {row.name: row for row in list_runs(runs_dir)}
    assert set(rows) == {"classification", "regression"}
    classification = rows["classification"]
    info = json.loads((finished_runs["classification"] / "run.json").read_text())
    metrics = json.loads((finished_runs["classification"] / "metrics.json").read_text())
    assert classification.status == "completed" and classification.target == "species"
    assert classification.data.endswith("pets.csv")
    assert classification.monitor == "val_loss" and classification.best_val == info["best_value"]
    assert classification.test_metric == "accuracy" and classification.test_value == metrics["test"]["species"]["accuracy"]
    assert classification.epochs == info["epochs_run"] and classification.duration_s is not None
    assert rows["regression"].test_metric == "rmse"
    assert rows["regression"].metrics["val_r2"] == json.loads((finished_runs["regression"] / "metrics.json").read_text())["val"]["price"]["r2"]


def test_sort_puts_the_best_first_and_runs_without_the_metric_last(runs_dir):
    by_accuracy = list_runs(runs_dir, sort="test_accuracy")
    assert [row.name for row in by_accuracy] == ["classification", "regression"]  # regression has no accuracy
    fake = runs_dir / "20990101-000000-better"
    shutil.copytree(next(runs_dir.glob("*-classification")), fake)
    metrics = json.loads((fake / "metrics.json").read_text())
    metrics["test"]["species"]["accuracy"] = 1.0
    (fake / "metrics.json").write_text(json.dumps(metrics))
    assert list_runs(runs_dir, sort="test_accuracy")[0].id == fake.name  # larger accuracy first
    assert list_runs(runs_dir, sort="epochs")[0].epochs == min(r.epochs for r in list_runs(runs_dir))


def test_unknown_sort_key_names_the_keys_that_exist(runs_dir):
    with pytest.raises(RunError, match=r"--sort 'test_acuracy' is not recorded by any run; choose one of: .*test_accuracy"):
        list_runs(runs_dir, sort="test_acuracy")


def test_name_filter_matches_substrings_and_patterns(runs_dir):
    assert [row.name for row in list_runs(runs_dir, name="class")] == ["classification"]
    assert [row.name for row in list_runs(runs_dir, name="reg*")] == ["regression"]
    assert list_runs(runs_dir, name="nothing*") == []


def test_damaged_and_unfinished_runs_are_listed_not_fatal(runs_dir):
    damaged = runs_dir / "20990101-000000-damaged"
    damaged.mkdir()
    (damaged / "run.json").write_text("{not json")
    running = runs_dir / "20990101-000001-running"
    running.mkdir()
    (running / "run.json").write_text(json.dumps({"status": "running", "started": "2099-01-01T00:00:01+00:00"}))
    # no process holds its lock: it is listed as lost (tests/test_interrupts.py holds one to see `running`)
    (runs_dir / "notes.txt").write_text("not a run")
    rows = {row.id: row for row in list_runs(runs_dir)}
    assert rows[damaged.name].status == "damaged run.json" and rows[damaged.name].name == "damaged"
    assert rows[running.name].status == "lost" and rows[running.name].epochs is None
    assert len(rows) == 4


def test_a_hundred_runs_are_read(tmp_path, finished_runs):
    source = finished_runs["regression"]
    for index in range(100):
        run = tmp_path / "many" / f"20990101-{index:06d}-trial"
        run.mkdir(parents=True)
        for name in ("run.json", "metrics.json"):
            shutil.copy(source / name, run / name)
    rows = list_runs(tmp_path / "many", sort="test_rmse")
    assert len(rows) == 100 and all(row.test_value == rows[0].test_value for row in rows)


def test_listing_never_imports_torch_or_pandas(runs_dir):
    code = (f"import sys; from typer.testing import CliRunner; from dlrun.cli import app; "
            f"result = CliRunner().invoke(app, ['runs', {str(runs_dir)!r}, '--json']); assert result.exit_code == 0, result.output; "
            f"from dlrun.run.listing import compare_runs; compare_runs(list(__import__('pathlib').Path({str(runs_dir)!r}).iterdir())); "
            f"print(sorted(m for m in ('torch', 'pandas', 'numpy', 'matplotlib') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_compare_shows_config_differences_and_metrics_side_by_side(runs_dir):
    first = next(runs_dir.glob("*-regression"))
    second = runs_dir / "20990101-000000-regression"
    shutil.copytree(first, second)
    config = (second / "config.yaml").read_text()
    (second / "config.yaml").write_text(config.replace("lr: 0.01", "lr: 0.02"))
    result = compare_runs([first, second])
    assert ("optimizer.lr", [0.01, 0.02]) in result.config
    assert all(key != "seed" for key, _ in result.config)  # identical keys are left out
    metrics = dict(result.metrics)
    expected = json.loads((first / "metrics.json").read_text())["test"]["price"]["rmse"]
    assert metrics["test_rmse"] == [expected, expected]
    assert list(metrics)[0].startswith("train_") and list(metrics)[-1].startswith("test_")


def test_compare_rejects_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(RunError, match="is not a dlrun run directory"):
        compare_runs([tmp_path])


def test_runs_and_compare_commands(runs_dir):
    runs = sorted(runs_dir.iterdir())
    results = run_cli_many({
        "table": (["runs", runs_dir, "--sort", "val_loss"], None),
        "json": (["runs", runs_dir, "--json", "--name", "regr"], None),
        "bad": (["runs", runs_dir, "--sort", "nope"], None),
        "missing": (["runs", runs_dir / "absent"], None),
        "compare": (["compare", *runs], None),
        "compare_json": (["compare", *runs, "--json"], None),
    })
    table = results["table"]
    assert table.returncode == 0, table.stderr
    for heading in ("id", "name", "status", "data", "target", "best val", "test", "epochs", "duration"):
        assert heading in table.stdout
    assert "classification" in table.stdout and "accuracy" in table.stdout and "completed" in table.stdout
    for row in list_runs(runs_dir):
        assert f"{row.test_metric} {format_value(row.test_value)}" in table.stdout
        assert f"val_loss {format_value(row.best_val)}" in table.stdout
    listed = json.loads(results["json"].stdout)
    assert [row["name"] for row in listed] == ["regression"] and listed[0]["test_metric"] == "rmse"
    assert results["bad"].returncode == 2 and "Error: --sort 'nope' is not recorded" in results["bad"].stderr
    assert results["missing"].returncode == 2 and "runs directory not found" in results["missing"].stderr
    assert results["compare"].returncode == 0 and "config differences" in results["compare"].stdout
    assert "data.target" in results["compare"].stdout and "test_accuracy" in results["compare"].stdout
    for row in list_runs(runs_dir):
        assert format_value(row.metrics["test_" + row.test_metric]) in results["compare"].stdout
    compared = json.loads(results["compare_json"].stdout)
    assert compared["runs"] == [run.name for run in runs] and "data.target" in compared["config"]


def test_format_duration():
    assert (format_duration(None), format_duration(4.4), format_duration(125)) == ("-", "4s", "2m05s")


def test_read_run_row_falls_back_to_the_directory_name(tmp_path):
    run = tmp_path / "20990101-000000-my-run-2"
    run.mkdir()
    (run / "run.json").write_text("{}")
    row = read_run_row(run)
    assert row.name == "my-run" and row.status == "unknown" and row.test_value is None


def test_library_twins_are_importable_from_the_package():
    import dlrun
    from dlrun.probe import explain
    from dlrun.run import listing, report

    assert dlrun.list_runs is listing.list_runs and dlrun.compare_runs is listing.compare_runs
    assert dlrun.build_report is report.build_report and dlrun.explain_dropout is explain.explain_dropout

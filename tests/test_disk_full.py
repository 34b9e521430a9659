"""A full disk (issue 14, item 5): one `Error: no space left on device writing RUN/FILE` line and exit 2, never a
traceback; the run recorded as failed wherever run.json can still be written; report, --resume and predict alike.

Each test mounts its own small tmpfs (root, as in CI; skipped with the reason elsewhere) and unmounts it afterwards.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import FAST, make_regression_frame, merge, run_cli, run_cli_many
from dlrun.run.record import RunRecord, write_status
from small_disk import fill, small_disks  # noqa: F401  (a fixture)

BIG_MODEL = {"model": {"hidden": [128, 64], "dropout": 0.0}}  # checkpoints of ~150 KB: more than a 64k disk holds


def assert_disk_full_error(result, where: Path) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "Error: no space left on device writing" in result.stderr, result.stderr
    assert str(where) in result.stderr.replace("\n", ""), result.stderr


@pytest.fixture
def houses(tmp_path: Path) -> Path:
    path = tmp_path / "houses.csv"
    make_regression_frame(80).to_csv(path, index=False)
    return path


def config(tmp_path: Path, houses: Path, **extra) -> Path:
    path = tmp_path / "houses.yaml"
    path.write_text(yaml.safe_dump(merge(FAST, {"name": "houses", "data": {"path": str(houses), "target": "price"}, **extra})))
    return path


def test_training_onto_a_full_disk_names_the_file_and_records_the_run_failed(small_disks, tmp_path, houses):
    disk = small_disks.mount("64k")
    result = run_cli("train", config(tmp_path, houses, **BIG_MODEL), "--runs-dir", disk / "runs", cwd=tmp_path)
    assert_disk_full_error(result, disk / "runs")
    run_dirs = list((disk / "runs").iterdir())
    assert len(run_dirs) == 1  # the run left a trace: run.json says what happened
    info = json.loads((run_dirs[0] / "run.json").read_text())
    assert info["status"] == "failed" and "No space left on device" in info["error"]
    listing = run_cli("runs", disk / "runs", "--json", cwd=tmp_path)
    assert listing.returncode == 0 and json.loads(listing.stdout)[0]["status"].startswith("failed")


def test_a_disk_too_small_for_any_file_leaves_no_run_directory_behind(small_disks, tmp_path, houses):
    disk = small_disks.mount("64k")
    (disk / "runs").mkdir()
    fill(disk)
    result = run_cli("train", config(tmp_path, houses), "--runs-dir", disk / "runs", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "no space left on device" in result.stderr
    assert list((disk / "runs").iterdir()) == []


def test_failure_is_recorded_in_place_when_not_even_a_small_file_fits(small_disks):
    disk = small_disks.mount("64k")
    run_dir = disk / "run"
    run_dir.mkdir()
    info = {"status": "running", "name": "x", "started": "2026-01-01T00:00:00+00:00", "data": {"padding": "x" * 2000}}
    (run_dir / "run.json").write_text(json.dumps(info))
    fill(disk)
    write_status(run_dir, RunRecord.model_validate(info).updated(status="failed", error="OSError: no space"))
    recorded = json.loads((run_dir / "run.json").read_text())
    assert recorded["status"] == "failed" and recorded["error"] == "OSError: no space" and recorded["name"] == "x"


def test_report_resume_and_predict_on_a_full_disk_give_the_message(small_disks, tmp_path, houses):
    run_dir = small_disks.interrupted_run(houses, "1m")
    disk = run_dir.parent
    fill(disk)
    results = run_cli_many({
        "report": (["report", run_dir], tmp_path),
        "resume": (["train", "--resume", run_dir], tmp_path),
        "predict": (["predict", run_dir, houses, "--output", disk / "predictions.csv"], tmp_path),
    })
    assert_disk_full_error(results["report"], run_dir)
    assert_disk_full_error(results["resume"], run_dir)
    assert_disk_full_error(results["predict"], disk / "predictions.csv")
    assert not (disk / "predictions.csv").exists()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"  # not `running`: the resume could not start

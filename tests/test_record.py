"""One owner per concept: run.json through RunRecord, file names through layout and safe_file_name, the run lock,
and the questions other stages ask the fitted preprocessor and the model."""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import pandas as pd
import pytest
import torch

from dlrun.config.schema import ModelConfig, PreprocessConfig
from dlrun.config.load import validate_config
from dlrun.core.errors import RunError
from dlrun.core.text import MAX_FILE_NAME_PART, safe_file_name
from dlrun.data.preprocess import Preprocessor
from dlrun.model.mlp import build_model
from dlrun.run import layout
from dlrun.run.listing import list_runs
from dlrun.run.lock import hold_run_lock
from dlrun.run.record import RunRecord, read_record, write_record
from dlrun.run.runner import resume, train

from conftest import FAST, InterruptAfter, make_classification_frame, merge

# run.json as dlrun wrote it before the record had a model (keys in that order, no score_test, threads or train_step).
OLD_RUN_JSON = {
    "status": "completed", "started": "2026-11-30T10:00:00+00:00", "ended": "2026-11-30T10:00:09+00:00",
    "name": "salary", "data_source": "salary", "seed": 0, "device": "cpu",
    "versions": {"python": "3.12.1", "dlrun": "0.4.0", "torch": "2.13.0", "numpy": "2.1.0", "pandas": "2.2.3",
                 "torchmetrics": "1.6.0", "pydantic": "2.10.0"}, "git_commit": None,
    "data": {"rows": {"train": 10, "val": 3, "test": 3}, "targets": {"wages": {"task": "regression", "min": 1.0,
                                                                                "mean": 2.0, "max": 3.0}}},
    "notes": [], "seconds": {"load_and_preprocess": 0.5, "train": 3.2}, "epochs_run": 20, "best_epoch": 18,
    "monitor": "val_loss", "best_value": 0.41, "stop_reason": "ran all 20 epochs", "warnings": [],
    "resumed": [{"at": "2026-11-30T10:00:05+00:00", "after_epoch": 4}], "from_a_newer_dlrun": {"kept": True},
}


# ---- safe_file_name ------------------------------------------------------------------------------------------------
def test_safe_text_is_kept_as_it_is():
    for text in ("type", "wages", "a b", "ä-é.1"):
        assert safe_file_name(text) == text


@pytest.mark.parametrize("text", ["a/../../../../victim", "sub/dir", "..", "a\\b", "x\x1b[31m", "new\nline", "", "/"])
def test_unsafe_text_becomes_one_file_name_part(text):
    name = safe_file_name(text)
    assert name and "/" not in name and "\\" not in name and ".." not in name and not name.startswith(".")
    assert not any(ord(ch) < 32 or ord(ch) == 127 for ch in name)


def test_changed_text_stays_distinct_and_long_text_is_bounded():
    assert safe_file_name("a/b") != safe_file_name("a_b") and safe_file_name("a/b") != safe_file_name("a\\b")
    long = safe_file_name("é" * 300)
    assert len(long.encode()) <= MAX_FILE_NAME_PART and long != safe_file_name("é" * 301)


def test_a_target_named_like_a_path_writes_inside_its_run(tmp_path):
    target = "a/../../../../victim"
    frame = make_classification_frame().rename(columns={"species": target})
    frame.to_csv(tmp_path / "pets.csv", index=False)
    cfg = validate_config(merge(FAST, {"data": {"path": str(tmp_path / "pets.csv"), "target": target}, "report": True,
                                       "train": {"epochs": 2}}))
    runs = tmp_path / "deep" / "er" / "runs"
    run = train(cfg, runs)
    written = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()}
    assert all(p.parts[:3] == ("deep", "er", "runs") or p.name == "pets.csv" for p in written), written
    assert (run.run_dir / layout.confusion_file(target)).is_file()
    assert (run.run_dir / layout.plot_file("confusion", target)).is_file()


# ---- the run record ------------------------------------------------------------------------------------------------
def test_a_run_json_written_before_the_record_model_is_read_and_kept(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps(OLD_RUN_JSON))
    record = read_record(tmp_path)
    assert record.status_text == "completed" and record.best_epoch == 18 and record.resumed[0].after_epoch == 4
    assert record.score_test and record.train_step is None and record.tasks() == {"wages": "regression"}
    write_record(tmp_path, record.updated(warnings=["w"]))
    assert json.loads((tmp_path / "run.json").read_text()) == {**OLD_RUN_JSON, "warnings": ["w"]}  # nothing lost


def test_a_failed_record_says_why():
    assert RunRecord(status="failed", error="interrupted").status_text == "failed: interrupted"
    assert RunRecord().status_text is None


@pytest.mark.parametrize("text, where", [('{"status": "done"}', "status"), ('{"epochs_run": "many"}', "epochs_run"),
                                         ("[1]", "list"), ("{", "damaged"), ("[" * 100_000, "damaged")])
def test_a_damaged_run_json_is_a_run_error_naming_the_file(tmp_path, text, where):
    (tmp_path / "run.json").write_text(text)
    with pytest.raises(RunError, match="run.json is damaged") as error:
        read_record(tmp_path)
    assert str(tmp_path / "run.json") in str(error.value) and where in str(error.value)


def test_a_missing_run_json_reads_as_an_empty_record(tmp_path):
    assert read_record(tmp_path) == RunRecord()


def test_runs_lists_a_run_without_a_readable_run_json_as_broken(tmp_path):
    (tmp_path / "20990101-000000-lost" / "checkpoints").mkdir(parents=True)
    damaged = tmp_path / "20990101-000001-damaged"
    damaged.mkdir()
    (damaged / "run.json").write_text('{"epochs_run": "many"}')
    (tmp_path / "not-a-run").mkdir()
    rows = {row.name: row.status for row in list_runs(tmp_path)}
    assert rows == {"lost": "broken: no run.json", "damaged": "damaged run.json"}


def test_the_record_is_written_first_and_says_failed_when_a_later_write_fails(tmp_path, monkeypatch):
    import dlrun.run.outcome as outcome  # begin_run writes a run's first files

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outcome, "write_config", full_disk)
    with pytest.raises(OSError):
        train(validate_config(merge(FAST, {"data": {"dataset": "salary"}})), tmp_path)
    (run_dir,) = tmp_path.iterdir()
    record = read_record(run_dir)
    assert record.status == "failed" and "No space left" in record.error and record.name


def test_a_run_interrupted_by_an_older_dlrun_resumes_to_the_same_result(tmp_path):
    """last.pt from before it carried the best weights and the stop decision: best.pt and the loop supply them."""
    config = merge(FAST, {"data": {"dataset": "synthetic", "synthetic": {"n_samples": 200}}, "optimizer": {"lr": 0.05},
                          "train": {"epochs": 6, "early_stopping": {"patience": 2}}})
    straight = train(validate_config(config), tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        train(validate_config(config), tmp_path / "b", callbacks=[InterruptAfter(2)])
    (run_dir,) = (tmp_path / "b").iterdir()
    last = run_dir / layout.LAST_CHECKPOINT
    checkpoint = torch.load(last, weights_only=True)
    torch.save({k: v for k, v in checkpoint.items() if k not in ("best_model", "stop")}, last)
    info = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({k: v for k, v in info.items() if k not in ("threads", "train_step", "score_test")}))
    resumed = resume(run_dir)
    assert (resumed.best_epoch, resumed.epochs_run) == (straight.best_epoch, straight.epochs_run)
    assert json.loads((run_dir / "metrics.json").read_text()) == json.loads((straight.run_dir / "metrics.json").read_text())


# ---- the run lock --------------------------------------------------------------------------------------------------
def test_the_run_lock_names_its_holder_and_is_gone_when_released(tmp_path):
    with hold_run_lock(tmp_path):
        with pytest.raises(RunError, match=f"already being trained by pid {os.getpid()} on host {socket.gethostname()}"):
            with hold_run_lock(tmp_path):
                pass
    assert not (tmp_path / layout.LOCK).exists()
    with hold_run_lock(tmp_path):  # free again
        assert (tmp_path / layout.LOCK).is_file()


# ---- asking the preprocessor and the model -------------------------------------------------------------------------
def test_the_fitted_preprocessor_answers_what_other_stages_ask():
    frame = pd.DataFrame({"x": [1.0, 2.0, None, 4.0], "c": ["a", "b", "a", None], "y": [10.0, 20.0, 30.0, 40.0],
                          "k": ["u", "v", "u", "w"]})
    prep = Preprocessor(PreprocessConfig(), ["x", "c"], ["y", "k"], {"y": "regression", "k": "classification"}).fit(frame)
    assert not prep.is_classification("y") and prep.is_classification("k")
    assert (prep.n_outputs("y"), prep.n_outputs("k")) == (1, 3) and prep.output_sizes() == {"y": 1, "k": 3}
    scaled = prep.transform_targets(frame)["y"].astype(np.float64)
    np.testing.assert_allclose(prep.to_original_units("y", scaled), frame["y"], rtol=1e-6)
    assert prep.regression_scale("y") == pytest.approx(frame["y"].std(ddof=0))
    assert (prep.numeric_features, prep.categorical_features) == (["x"], ["c"])
    assert prep.feature_names_ == ["x", "c=a", "c=__missing__", "c=b", "x (missing)"]
    assert prep.onehot_blocks() == [slice(1, 4)]
    assert prep.missing_in_train() == {"x": 1, "c": 1}


def test_the_model_answers_for_its_layers_and_heads():
    model = build_model(5, {"y": 1, "k": 3}, ModelConfig(hidden=[8, 4], dropout=0.1), seed=0)
    linears = [m for m in model.hidden_layers() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(5, 8), (8, 4)]
    assert model.head("k").out_features == 3 and model.head("y").out_features == 1
    assert model(torch.zeros(2, 5))["k"].shape == (2, 3)
    named = dict(model.named_parameters())
    heads = {name: model.head_target(name) for name in named}
    assert [t for t in heads.values() if t] == ["y", "y", "k", "k"]
    assert all(named[name] is getattr(model.head(t), name.rsplit(".", 1)[1]) for name, t in heads.items() if t)

"""Hostile input (issue 14, items 1, 4, 6-9 and memory): user text never becomes a path or markup, outputs never replace
what they should write into, non-finite values are refused at the edge, configs cannot hide duplicates or explode,
and chunked predict/eval give exactly the unchunked result. End-to-end through the real CLI where the issue is CLI
behaviour.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import dlrun
from conftest import FAST, make_classification_frame, make_regression_frame, merge, run_cli, run_cli_many
from dlrun.config.load import validate_config
from dlrun.core.text import MAX_FILE_NAME_PART as MAX_NAME_CHARS, safe_file_name, safe_terminal_text
from dlrun.training.callbacks import Callback
from small_disk import small_disks  # noqa: F401  (a fixture)


def clean_error(result, *needles: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.lstrip().startswith("Error:"), result.stderr
    flat = result.stderr.replace("\n", "")
    for needle in needles:
        assert needle in flat, (needle, result.stderr)


def write_yaml(path: Path, data: dict, **sections) -> Path:
    path.write_text(yaml.safe_dump(merge(FAST, {"data": data, **sections}), sort_keys=False))
    return path


# ---- item 1 and 9: file names from user text ----------------------------------------------------------------------
def test_safe_file_name_never_leaves_the_folder_and_stays_short():
    for text in ["a/../../../../victim", "sub/dir", "..", ".", "", "\x00x\n", "a\\b", "x" * 300, "é" * 200]:
        name = safe_file_name(text)
        assert "/" not in name and "\\" not in name and ".." not in name and name not in ("", ".")
        assert len(name) <= MAX_NAME_CHARS and name.isprintable()
    assert safe_file_name("type") == "type" and safe_file_name("wages.usd") == "wages.usd"
    assert safe_file_name("a/b") != safe_file_name("a_b")  # changed names carry a hash: no two share a file


def test_safe_terminal_text_shows_escape_codes_and_markup_as_text():
    shown = safe_terminal_text("\x1b[31mred\x1b]0;title\x07 [/b] y[/]\r")
    assert "\x1b" not in shown and "\x07" not in shown and "\r" not in shown
    assert "\\x1b[31m" in shown and "\\[/b]" in shown and "y\\[/]" in shown


def test_hostile_target_names_stay_inside_the_run_directory(tmp_path):
    frame = make_classification_frame(60)
    long_name = "t" * 250
    frame["a/../../../../victim"] = frame["species"]
    frame["sub/dir"] = frame["species"]
    frame[long_name] = frame["species"]
    frame.to_csv(tmp_path / "pets.csv", index=False)
    runs = tmp_path / "deep" / "er" / "runs"
    commands = {}
    for key, target in (("traversal", "a/../../../../victim"), ("subdir", "sub/dir"), ("long", long_name)):
        data = {"path": str(tmp_path / "pets.csv"), "target": target, "drop": ["species", *(
            c for c in ("a/../../../../victim", "sub/dir", long_name) if c != target)]}
        commands[key] = (["train", write_yaml(tmp_path / f"{key}.yaml", data, name=key), "--runs-dir", runs], tmp_path)
    results = run_cli_many(commands)
    for key, result in results.items():
        assert result.returncode == 0, result.stderr
        run_dir = Path(result.stdout.strip().splitlines()[-1])
        if not run_dir.is_absolute():
            run_dir = tmp_path / run_dir
        confusion = [p.name for p in run_dir.iterdir() if p.name.startswith("confusion_")]
        assert len(confusion) == 1 and len(confusion[0]) < 255, confusion
        assert sorted(p.name for p in run_dir.iterdir() if p.is_dir()) == ["checkpoints"]
    assert not list(tmp_path.rglob("victim*"))


def test_a_300_character_run_name_is_a_bad_name_not_a_bad_runs_dir(tmp_path, regression_csv):
    config = write_yaml(tmp_path / "c.yaml", {"path": str(regression_csv), "target": "price"}, name="n" * 300)
    result = run_cli("train", config, "--runs-dir", tmp_path / "runs", cwd=tmp_path)
    clean_error(result, "name", "100 characters")
    assert "--runs-dir" not in result.stderr and not (tmp_path / "runs").exists()


# ---- item 4: --output ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile")
    make_classification_frame(90).to_csv(root / "pets.csv", index=False)
    cfg = validate_config(merge(FAST, {"name": "pets", "data": {"path": str(root / "pets.csv"), "target": "species"}}))
    return {"root": root, "csv": root / "pets.csv", "run": dlrun.train(cfg, root / "runs").run_dir}


def test_output_through_a_symlink_writes_its_target_and_a_fifo_is_refused(finished, tmp_path):
    real = tmp_path / "real.csv"
    real.write_text("old\n")
    (tmp_path / "link.csv").symlink_to(real)
    (tmp_path / "real.json").write_text("{}")
    (tmp_path / "link.json").symlink_to(tmp_path / "real.json")
    os.mkfifo(tmp_path / "fifo")
    results = run_cli_many({
        "link": (["predict", finished["run"], finished["csv"], "--output", tmp_path / "link.csv"], tmp_path),
        "eval_link": (["eval", finished["run"], "--output", tmp_path / "link.json"], tmp_path),
        "fifo": (["predict", finished["run"], finished["csv"], "--output", tmp_path / "fifo"], tmp_path),
    })
    assert results["link"].returncode == 0 and results["eval_link"].returncode == 0, results["link"].stderr
    assert (tmp_path / "link.csv").is_symlink() and (tmp_path / "link.json").is_symlink()
    assert "species_pred" in real.read_text() and "metrics" in json.loads((tmp_path / "real.json").read_text())
    clean_error(results["fifo"], "not a regular file", "--output")
    assert stat.S_ISFIFO((tmp_path / "fifo").lstat().st_mode)


# ---- item 6: non-finite and overflowing values --------------------------------------------------------------------
def test_overflowing_values_and_infinite_settings_are_refused_before_a_run_exists(tmp_path, regression_csv):
    huge = make_regression_frame(60)
    huge.loc[[1, 2], "size"] = [1e308, -1e308]
    huge.to_csv(tmp_path / "huge_feature.csv", index=False)
    huge = make_regression_frame(60)
    huge["price"] = huge["price"] * 1e300
    huge.to_csv(tmp_path / "huge_target.csv", index=False)
    data = {"path": str(regression_csv), "target": "price"}
    configs = {
        "feature": write_yaml(tmp_path / "f.yaml", {**data, "path": str(tmp_path / "huge_feature.csv")}),
        "target": write_yaml(tmp_path / "t.yaml", {**data, "path": str(tmp_path / "huge_target.csv")}),
        "loss_weight": write_yaml(tmp_path / "l.yaml", data, train={"epochs": 2, "loss_weight": {"price": float("inf")}}),
        "init_std": write_yaml(tmp_path / "i.yaml", data, model={"hidden": [8], "init": "normal", "init_std": float("inf")}),
    }
    results = run_cli_many({key: (["train", path, "--runs-dir", tmp_path / "runs"], tmp_path) for key, path in configs.items()})
    clean_error(results["feature"], "'size'", "too large to scale")
    clean_error(results["target"], "'price'", "too large to scale")
    clean_error(results["loss_weight"], "train.loss_weight")
    clean_error(results["init_std"], "model.init_std")
    assert not (tmp_path / "runs").exists()


class PoisonWeights(Callback):
    """The model diverges at the very end: every weight NaN, so every metric is NaN."""

    def on_train_end(self, state):
        with torch.no_grad():
            for parameter in state.model.parameters():
                parameter.fill_(float("nan"))


def test_a_run_with_non_finite_metrics_says_so(tmp_path, regression_csv):
    cfg = validate_config(merge(FAST, {"data": {"path": str(regression_csv), "target": "price"}}))
    run = dlrun.train(cfg, tmp_path / "runs", callbacks=[PoisonWeights()])
    info = json.loads((run.run_dir / "run.json").read_text())
    assert any("not finite" in w for w in run.warnings)
    assert any("not finite" in w and "test price rmse" in w for w in info["warnings"])


# ---- item 7: no tracebacks on user-controlled text and files -------------------------------------------------------
def test_markup_and_escape_codes_in_names_print_as_text(tmp_path):
    frame = make_regression_frame(60).rename(columns={"size": "x[/b]", "price": "y[/]"})
    frame.to_csv(tmp_path / "m.csv", index=False)
    frame.rename(columns={"rooms": "\x1b[31mred"}).to_csv(tmp_path / "esc.csv", index=False)
    out = tmp_path / "out[/b]"  # two folders, `out[` and `b]`, whose path reads as a closing tag
    out.mkdir(parents=True)
    config = write_yaml(tmp_path / "m.yaml", {"path": str(tmp_path / "m.csv"), "target": "y[/]", "units": {"y[/]": "[/b]"}})
    bad = write_yaml(tmp_path / "esc.yaml", {"path": str(tmp_path / "esc.csv"), "target": "nope"})
    results = run_cli_many({"train": (["train", config, "--runs-dir", tmp_path / "runs"], tmp_path),
                            "escape": (["train", bad, "--runs-dir", tmp_path / "runs"], tmp_path)})
    assert results["train"].returncode == 0 and "Traceback" not in results["train"].stderr, results["train"].stderr
    assert "target: y[/]" in results["train"].stderr and "rmse ([/b])" in results["train"].stderr
    clean_error(results["escape"], "\\x1b[31mred")
    assert "\x1b" not in results["escape"].stderr
    run_dir = tmp_path / results["train"].stdout.strip().splitlines()[-1]
    predicted = run_cli("predict", run_dir, tmp_path / "m.csv", "--output", out / "p.csv", cwd=tmp_path)
    assert predicted.returncode == 0 and (out / "p.csv").is_file(), predicted.stderr


def test_columns_that_collide_once_trimmed_are_named_in_train_and_predict(finished, tmp_path):
    frame = make_classification_frame(60)
    frame["x1 "] = frame["x1"]
    frame.to_csv(tmp_path / "twins.csv", index=False)
    config = write_yaml(tmp_path / "t.yaml", {"path": str(tmp_path / "twins.csv"), "target": "species"})
    results = run_cli_many({"train": (["train", config, "--runs-dir", tmp_path / "runs"], tmp_path),
                            "predict": (["predict", finished["run"], tmp_path / "twins.csv"], tmp_path)})
    for result in results.values():
        clean_error(result, "'x1' and 'x1 '")


def test_deep_nesting_symlink_loops_and_damaged_run_files_are_messages(finished, tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("data: " + "[" * 5000 + "]" * 5000 + "\n")
    (tmp_path / "loop_a.yaml").symlink_to(tmp_path / "loop_b.yaml")
    (tmp_path / "loop_b.yaml").symlink_to(tmp_path / "loop_a.yaml")
    nested_config = Path(shutil.copytree(finished["run"], tmp_path / "runs" / "20260101-000000-nested"))
    (nested_config / "config.yaml").write_text("data: " + "[" * 5000 + "]" * 5000 + "\n")
    nested_json = Path(shutil.copytree(finished["run"], tmp_path / "runs" / "20260101-000001-json"))
    (nested_json / "run.json").write_text("[" * 100_000 + "]" * 100_000)
    string_metrics = Path(shutil.copytree(finished["run"], tmp_path / "runs" / "20260101-000002-strings"))
    (string_metrics / "metrics.json").write_text('{"test": {"species": {"accuracy": "high"}}}')
    results = run_cli_many({
        "deep": (["train", deep], tmp_path),
        "loop": (["train", tmp_path / "loop_a.yaml"], tmp_path),
        "eval_nested": (["eval", nested_config], tmp_path),
        "report_json": (["report", nested_json], tmp_path),
        "runs": (["runs", tmp_path / "runs", "--json"], tmp_path),
        "compare": (["compare", nested_config, nested_json], tmp_path),
        "report_strings": (["report", string_metrics], tmp_path),
    })
    clean_error(results["deep"], "nested more than")
    clean_error(results["loop"], "cannot read config file", "symbolic links")
    clean_error(results["eval_nested"], "damaged config.yaml")
    clean_error(results["report_json"], "nested too deeply")
    clean_error(results["report_strings"], "accuracy holds 'high', not a number")
    for key in ("runs", "compare"):
        assert results[key].returncode == 0 and "Traceback" not in results[key].stderr, results[key].stderr
    statuses = {row["id"]: row["status"] for row in json.loads(results["runs"].stdout)}
    assert statuses["20260101-000001-json"] == "damaged run.json"


def test_read_only_run_directory_is_a_message_for_report_explain_and_resume(small_disks, tmp_path, regression_csv):
    run_dir = small_disks.interrupted_run(regression_csv, "2m")
    disk = run_dir.parent
    small_disks.read_only(disk)
    results = run_cli_many({"report": (["report", run_dir], tmp_path),
                            "explain": (["explain", "dropout", run_dir], tmp_path),
                            "resume": (["train", "--resume", run_dir], tmp_path)})
    for result in results.values():
        clean_error(result, "read-only file system", str(run_dir))


# ---- item 8: duplicated keys and alias bombs -----------------------------------------------------------------------
def test_duplicated_keys_are_errors_naming_the_key_and_both_lines(tmp_path, regression_csv):
    config = tmp_path / "dup.yaml"
    config.write_text(f"data: {{path: {regression_csv}, target: price}}\noptimizer:\n  lr: 5.0\n  lr: 0.01\n")
    sections = tmp_path / "sections.yaml"
    sections.write_text(f"data: {{path: {regression_csv}, target: price}}\ntrain: {{epochs: 3}}\nseed: 1\ntrain: {{epochs: 2}}\n")
    good = write_yaml(tmp_path / "good.yaml", {"path": str(regression_csv), "target": "price"})
    results = run_cli_many({
        "key": (["check", config], tmp_path),
        "section": (["check", sections], tmp_path),
        "set": (["check", good, "--set", "optimizer={lr: 1.0, lr: 0.01}"], tmp_path),
    })
    clean_error(results["key"], "'lr' appears twice", "line 3 and line 4")
    clean_error(results["section"], "'train' appears twice", "line 2 and line 4")
    clean_error(results["set"], "'lr' appears twice")


def test_an_alias_bomb_is_refused_at_once_leaving_no_run_directory(tmp_path, regression_csv):
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    config = tmp_path / "bomb.yaml"
    config.write_text("bombs:\n" + "".join(f"  {line}\n" for line in levels) + yaml.safe_dump(merge(FAST, {
        "data": {"path": str(regression_csv), "target": "price"}})) + "search:\n  space:\n    optimizer.lr: {choice: *a6}\n")
    result = run_cli("train", config, "--runs-dir", tmp_path / "runs", cwd=tmp_path, timeout=120)
    clean_error(result, "expands to more than 100,000 values")
    assert not (tmp_path / "runs").exists()


# ---- memory: chunked predict and eval give exactly the unchunked result --------------------------------------------
def test_chunked_predict_and_eval_equal_one_pass(finished, tmp_path, monkeypatch):
    from dlrun.data.load import read_csv
    from dlrun.inference import batch
    from dlrun.model import forward
    from dlrun.run.directory import open_run
    from dlrun.run.outputs import prediction_frame, with_predictions

    frame = make_classification_frame(90, seed=3)
    frame.loc[70:, "colour"] = np.nan  # the last chunks hold gaps the first do not
    frame.to_csv(tmp_path / "rows.csv", index=False)
    monkeypatch.setattr(forward, "EVAL_CHUNK_ROWS", 8)  # the model sees the same 8-row batches in both
    run = open_run(finished["run"])
    whole = read_csv(tmp_path / "rows.csv")
    X = torch.from_numpy(run.prep.transform_features(whole))
    expected = with_predictions(whole, prediction_frame(run.prep, forward.forward_split(run.model, X)))
    expected.to_csv(tmp_path / "expected.csv", index=False)
    one_pass = batch.evaluate(finished["run"], tmp_path / "rows.csv", output=tmp_path / "one.json").metrics

    from dlrun.data import chunks as reader

    monkeypatch.setattr(batch, "CHUNK_ROWS", 8)
    chunks = []
    real = reader.csv_chunks

    def counted(path, rows, **reading):  # the slices read for the model (the as-written ones come alongside)
        slices = real(path, rows, **reading)
        return slices if reading.get("as_text") else (chunks.append(len(c)) or c for c in slices)

    monkeypatch.setattr(reader, "csv_chunks", counted)
    result = batch.predict(finished["run"], tmp_path / "rows.csv", tmp_path / "chunked.csv")
    assert len(chunks) == 12 and result.n_rows == 90  # really read in slices
    assert (tmp_path / "chunked.csv").read_bytes() == (tmp_path / "expected.csv").read_bytes()
    assert batch.evaluate(finished["run"], tmp_path / "rows.csv", output=tmp_path / "chunked.json").metrics == one_pass


def test_slices_that_would_read_differently_fall_back_to_one_frame(tmp_path):
    from dlrun.data.chunks import csv_chunks
    from dlrun.data.load import read_csv

    frame = pd.DataFrame({"count": [1, 2, 3, 4, None, 6], "price": ["$1,000", "$2,000", "$3", "$4", "n/a?", "$6"]})
    frame.to_csv(tmp_path / "mixed.csv", index=False)  # slice 1: integers and money; slice 2: a gap and a word
    slices = list(csv_chunks(tmp_path / "mixed.csv", 3))
    assert len(slices) == 1
    pd.testing.assert_frame_equal(slices[0], read_csv(tmp_path / "mixed.csv"))

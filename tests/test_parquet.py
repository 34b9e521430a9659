"""Columnar input (issue 19 item 1): a Parquet file, a directory of Parquet or CSV parts, or a glob as data.path,
giving the same rows, the same metrics and the same predictions as the CSV they were written from."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_cli_many, write_config
from dlrun.config.schema import DataConfig
from dlrun.core.errors import DataError
from dlrun.data.chunks import table_chunks
from dlrun.data.load import builtin_path, load_dataset, read_csv, read_table

pytest.importorskip("pyarrow")


def _parts(frame: pd.DataFrame, folder: Path, n_parts: int, suffix: str = "parquet") -> Path:
    """`frame` written as n_parts files part-0.<suffix>, part-1.<suffix>, ... in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-len(frame) // n_parts)
    for i in range(n_parts):
        part = frame.iloc[i * size : (i + 1) * size]
        path = folder / f"part-{i}.{suffix}"
        part.to_parquet(path, index=False, row_group_size=50) if suffix == "parquet" else part.to_csv(path, index=False)
    return folder


def test_parquet_directory_and_glob_read_the_rows_of_the_csv(tmp_path):
    table = read_csv(builtin_path("salary.csv"), keep_tokens=True)
    one = tmp_path / "salary.parquet"
    table.to_parquet(one, index=False, row_group_size=500)
    folder = _parts(table, tmp_path / "parts", 3)
    csv_folder = _parts(table, tmp_path / "csv_parts", 2, suffix="csv")
    for source in (one, folder, f"{folder}/part-*.parquet", csv_folder):
        read = read_table(source, keep_tokens=True)
        pd.testing.assert_frame_equal(read, table, check_dtype=False)
    # chunked: row groups in batches, the row index counting on across files
    chunks = list(table_chunks(folder, 400, keep_tokens=True))
    assert max(len(c) for c in chunks) <= 400
    pd.testing.assert_frame_equal(pd.concat(chunks), table, check_dtype=False)


def test_named_features_read_only_their_columns(tmp_path):
    table = read_csv(builtin_path("salary.csv"), keep_tokens=True).assign(unused=1.0)
    path = tmp_path / "salary.parquet"
    table.to_parquet(path, index=False)
    dataset = load_dataset(DataConfig(path=str(path), target="wages", features=["age", "sex"]), seed=0)
    assert list(dataset.frame.columns) == ["wages", "age", "sex"]


def test_a_source_that_names_no_file_says_what_it_found(tmp_path):
    (tmp_path / "empty").mkdir()
    for path, words in ((tmp_path / "empty", "without .parquet or .csv"), (f"{tmp_path}/*.parquet", "matches no file"),
                        (tmp_path / "gone.parquet", "Parquet file not found")):
        with pytest.raises(DataError, match=words):
            read_table(path)
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="not a readable Parquet"):
        read_table(tmp_path / "bad.parquet")


@pytest.mark.slow
def test_same_metrics_and_predictions_from_csv_and_parquet(tmp_path, make_config):
    """The same table as CSV and as Parquet trains to identical metrics.json, and predict and eval --data on the
    Parquet file give the CSV's predictions and metrics."""
    commands, runs = {}, {}
    for name, target, drop in (("salary", "wages", []), ("animals", "type", ["name"])):
        table = read_csv(builtin_path(f"{name}.csv"), keep_tokens=True)
        table.to_csv(tmp_path / f"{name}.csv", index=False)
        table.to_parquet(tmp_path / f"{name}.parquet", index=False, row_group_size=40)
        for kind in ("csv", "parquet"):
            config = write_config(tmp_path / f"{name}_{kind}.yaml", {"path": str(tmp_path / f"{name}.{kind}"),
                                                                     "target": target, "drop": drop}, name=f"{name}_{kind}")
            runs[name, kind] = tmp_path / f"runs_{name}_{kind}"
            commands[name, kind] = (["train", config, "--runs-dir", runs[name, kind]], tmp_path)
    results = run_cli_many(commands)
    for key, result in results.items():
        assert result.returncode == 0, (key, result.stderr)
    run_dirs = {key: next(folder.iterdir()) for key, folder in runs.items()}
    for name in ("salary", "animals"):
        csv_metrics, parquet_metrics = (json.loads((run_dirs[name, kind] / "metrics.json").read_text()) for kind in ("csv", "parquet"))
        assert parquet_metrics == csv_metrics

    salary = run_dirs["salary", "csv"]
    served = run_cli_many({
        "csv": (["predict", salary, tmp_path / "salary.csv", "--output", tmp_path / "from_csv.csv"], tmp_path),
        "parquet": (["predict", salary, tmp_path / "salary.parquet", "--output", tmp_path / "from_parquet.csv"], tmp_path),
        "eval": (["eval", salary, "--data", tmp_path / "salary.parquet", "--output", tmp_path / "eval.json"], tmp_path),
        "eval_csv": (["eval", salary, "--data", tmp_path / "salary.csv", "--output", tmp_path / "eval_csv.json"], tmp_path),
    })
    for key, result in served.items():
        assert result.returncode == 0, (key, result.stderr)
    from_csv, from_parquet = pd.read_csv(tmp_path / "from_csv.csv"), pd.read_csv(tmp_path / "from_parquet.csv")
    assert len(from_parquet) == len(read_csv(builtin_path("salary.csv")))
    pd.testing.assert_series_equal(from_parquet["wages_pred"], from_csv["wages_pred"])
    assert (json.loads((tmp_path / "eval.json").read_text())["metrics"]
            == json.loads((tmp_path / "eval_csv.json").read_text())["metrics"])

"""Odd but real tables: what spreadsheets and exports produce must load, train and score sensibly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from dlrun.config.schema import DataConfig, PreprocessConfig
from dlrun.config.load import validate_config
from dlrun.data.load import load_dataset, read_csv
from dlrun.core.errors import DataError
from dlrun.metrics.score import score
from dlrun.data.preprocess import Preprocessor
from dlrun.run.runner import train

from conftest import FAST, make_regression_frame, merge


def _csv(tmp_path, frame, name="t.csv", **options):
    path = tmp_path / name
    frame.to_csv(path, index=False, **options)
    return path


def test_infinite_feature_values_are_imputed_not_propagated(tmp_path):
    frame = make_regression_frame(60)
    frame.loc[[2, 9], "size"] = [np.inf, -np.inf]
    run = train(validate_config(merge(FAST, {"data": {"path": str(_csv(tmp_path, frame)), "target": "price"}})), tmp_path / "runs")
    assert all(np.isfinite(v) for v in run.metrics["test"]["price"].values())


def test_infinite_regression_target_is_a_data_error_naming_the_row(tmp_path):
    frame = make_regression_frame(60)
    frame.loc[4, "price"] = np.inf
    with pytest.raises(DataError, match=r"'price' holds inf in row 5"):
        load_dataset(DataConfig(path=str(_csv(tmp_path, frame)), target="price"), seed=0)


def test_r2_does_not_depend_on_the_units_of_the_target():
    rng = np.random.default_rng(0)
    true, pred = rng.normal(size=50), rng.normal(size=50) * 0.5
    frame = pd.DataFrame({"x": np.zeros(50), "y": true})
    r2 = {}
    for unit in (1.0, 1e-9):
        prep = Preprocessor(PreprocessConfig(), ["x"], ["y"], {"y": "regression"}).fit(frame.assign(y=true * unit))
        scaled = (pred * unit - prep.targets_["y"]["mean"]) / prep.targets_["y"]["std"]
        y = torch.tensor((true * unit - prep.targets_["y"]["mean"]) / prep.targets_["y"]["std"])
        r2[unit] = score({"y": torch.tensor(scaled).unsqueeze(1)}, {"y": y}, prep)["y"]["r2"]
    assert r2[1e-9] == pytest.approx(r2[1.0], abs=1e-9)


def test_categories_read_back_as_numbers_match_their_text_spelling():
    train_rows = pd.DataFrame({"code": ["1", "2", "x", "1"], "y": [1.0, 2.0, 3.0, 1.0]})
    prep = Preprocessor(PreprocessConfig(), ["code"], ["y"], {"y": "regression"}).fit(train_rows)
    as_numbers = pd.DataFrame({"code": [1.0, 2.0, np.nan]})
    encoded = prep.transform_features(as_numbers)
    assert encoded[0].tolist() == prep.transform_features(pd.DataFrame({"code": ["1"]}))[0].tolist()
    assert encoded[1].sum() == 1.0


def test_text_class_labels_match_labels_read_as_numbers():
    train_rows = pd.DataFrame({"x": [0.0, 1.0, 2.0], "label": ["1", "2", "x"]})
    prep = Preprocessor(PreprocessConfig(), ["x"], ["label"], {"label": "classification"}).fit(train_rows)
    assert prep.transform_targets(pd.DataFrame({"label": [2, 1]}))["label"].tolist() == [1, 0]


def test_trailing_commas_and_a_saved_index_do_not_become_features(tmp_path):
    frame = make_regression_frame(60)
    path = tmp_path / "exported.csv"
    frame.to_csv(path)  # writes the row index as an unnamed first column
    path.write_text("\n".join(line + "," for line in path.read_text().splitlines()) + "\n")  # and a trailing comma
    assert list(read_csv(path).columns) == list(frame.columns)


def test_semicolon_file_with_decimal_commas_reads_numbers(tmp_path):
    path = _csv(tmp_path, make_regression_frame(60), sep=";", decimal=",")
    loaded = read_csv(path)
    assert pd.api.types.is_numeric_dtype(loaded["size"]) and pd.api.types.is_numeric_dtype(loaded["price"])


def test_latin1_file_is_read(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("ville,prix\nZürich,1.5\nSão Paulo,2.5\n".encode("latin-1"))
    assert read_csv(path)["ville"].tolist() == ["Zürich", "São Paulo"]


@pytest.mark.parametrize("data, message", [
    ({"features": ["size", "size"]}, "more than once"),
    ({"features": ["size", "city"], "drop": ["city"]}, "also a data.drop column"),
    ({"drop": ["price"]}, "target cannot be dropped"),
])
def test_contradicting_column_roles_are_data_errors(tmp_path, data, message):
    cfg = DataConfig(path=str(_csv(tmp_path, make_regression_frame(60))), target="price", **data)
    with pytest.raises(DataError, match=message):
        load_dataset(cfg, seed=0)


def test_an_empty_target_column_says_so(tmp_path):
    frame = make_regression_frame(60).assign(price=np.nan)
    with pytest.raises(DataError, match="'price' has no values"):
        load_dataset(DataConfig(path=str(_csv(tmp_path, frame)), target="price"), seed=0)


def test_classification_of_a_continuous_column_suggests_regression(tmp_path):
    cfg = DataConfig(path=str(_csv(tmp_path, make_regression_frame(60))), target="price", task="classification")
    with pytest.raises(DataError, match="data.task: regression"):
        load_dataset(cfg, seed=0)


def test_a_directory_as_csv_is_named_as_such(tmp_path):
    with pytest.raises(DataError, match="is a directory"):
        read_csv(tmp_path)

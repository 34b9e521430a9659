"""Stage 1, config -> frame: built-in data sets, task inference, splits, and every way a CSV can be wrong."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dlrun.config.load import validate_config
from dlrun.data.load import infer_task, load_dataset, make_synthetic, read_csv
from dlrun.data.splits import SPLITS
from dlrun.core.errors import DataError

from conftest import make_classification_frame, make_regression_frame


def data_cfg(**data):
    return validate_config({"data": data}).data


def load(seed: int = 0, **data):
    return load_dataset(data_cfg(**data), seed)


def split_sizes(dataset) -> dict[str, int]:
    return {name: int((dataset.split == name).sum()) for name in SPLITS}


# ---- built-in data sets ------------------------------------------------------------------------
def test_animals_has_101_rows_and_name_is_not_a_feature():
    dataset = load(dataset="animals")
    assert len(dataset.frame) == 101
    assert dataset.targets == ["type"] and dataset.tasks == {"type": "classification"}
    assert "name" not in dataset.features and "type" not in dataset.features
    assert len(dataset.features) == 16
    assert dataset.frame["type"].nunique() == 7


def test_salary_has_about_4100_rows_with_missing_education_and_language():
    dataset = load(dataset="salary")
    assert 4_000 <= len(dataset.frame) <= 4_200
    assert len(dataset.frame) == 4147
    assert dataset.tasks == {"wages": "regression"}
    assert set(dataset.features) == {"age", "sex", "education", "language"}
    assert dataset.frame["education"].isna().sum() > 0
    assert dataset.frame["language"].isna().sum() > 0
    assert dataset.frame["wages"].notna().all()


def test_synthetic_is_deterministic_per_seed():
    first, again, other = make_synthetic(50, 3, 0.1, 7), make_synthetic(50, 3, 0.1, 7), make_synthetic(50, 3, 0.1, 8)
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)


@pytest.mark.parametrize("n_samples, n_features", [(40, 2), (300, 5)])
def test_synthetic_shape_follows_the_config(n_samples, n_features):
    dataset = load(dataset="synthetic", synthetic={"n_samples": n_samples, "n_features": n_features})
    assert dataset.frame.shape == (n_samples, n_features + 2)
    assert dataset.features == [f"x{i}" for i in range(n_features)]
    assert dataset.targets == ["label", "salary"]
    assert dataset.tasks == {"label": "classification", "salary": "regression"}


def test_synthetic_label_follows_the_rule_on_the_first_two_features():
    frame = make_synthetic(2_000, 4, 0.0, 0)  # no noise: the rule holds exactly
    np.testing.assert_array_equal(frame["label"], (frame["x0"] + frame["x1"] > 0).astype(int))
    assert 30_000 < frame["salary"].mean() < 80_000


def test_synthetic_noise_changes_the_targets_not_the_features():
    quiet, noisy = make_synthetic(200, 3, 0.0, 1), make_synthetic(200, 3, 1.0, 1)
    pd.testing.assert_frame_equal(quiet[["x0", "x1", "x2"]], noisy[["x0", "x1", "x2"]])
    assert not np.allclose(quiet["salary"], noisy["salary"])


# ---- task inference ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "values, task",
    [
        (pd.Series(["cat", "dog", "cat"]), "classification"),
        (pd.Series(["cat", None, "dog"], dtype="string"), "classification"),
        (pd.Series([True, False, True]), "classification"),
        (pd.Series([0, 1, 2, 1, 0] * 4), "classification"),
        (pd.Series([1.0, 2.0, np.nan, 1.0]), "classification"),  # integer codes read as floats because of a gap
        (pd.Series([0.5, 1.25, 3.0]), "regression"),
        (pd.Series(np.arange(50)), "regression"),  # many distinct integers: a count, not a class
    ],
)
def test_task_is_inferred_from_the_target_values(values, task):
    assert infer_task(values) == task


def test_explicit_task_overrides_inference(tmp_path):
    path = tmp_path / "codes.csv"
    pd.DataFrame({"x": np.arange(30) / 10, "y": np.arange(30) % 3}).to_csv(path, index=False)
    assert load(path=str(path), target="y").tasks == {"y": "classification"}
    assert load(path=str(path), target="y", task="regression").tasks == {"y": "regression"}
    assert load(path=str(path), target="y", task={"y": "regression"}).tasks == {"y": "regression"}


def test_text_target_from_csv_is_classification(classification_csv):
    dataset = load(path=str(classification_csv), target="species")
    assert dataset.tasks == {"species": "classification"}
    assert dataset.features == ["x1", "x2", "colour"]


def test_features_and_drop_choose_the_columns(regression_csv):
    assert load(path=str(regression_csv), target="price", drop=["city"]).features == ["size", "rooms"]
    assert load(path=str(regression_csv), target="price", features=["rooms"]).features == ["rooms"]


def test_rows_without_a_target_are_dropped(tmp_path):
    frame = make_regression_frame()
    frame.loc[[0, 1, 2], "price"] = np.nan
    path = tmp_path / "gaps.csv"
    frame.to_csv(path, index=False)
    dataset = load(path=str(path), target="price")
    assert len(dataset.frame) == len(frame) - 3 and dataset.n_dropped_missing_target == 3
    assert dataset.frame["price"].notna().all()


# ---- splits ------------------------------------------------------------------------------------
def imbalanced_csv(tmp_path, n_rows: int = 1_000):
    rng = np.random.default_rng(0)
    labels = np.array(["common"] * 700 + ["middle"] * 250 + ["rare"] * 48 + ["tiny"] * 2)[:n_rows]
    path = tmp_path / "imbalanced.csv"
    pd.DataFrame({"x": rng.normal(size=len(labels)), "y": rng.permutation(labels)}).to_csv(path, index=False)
    return path


def test_stratified_split_fractions_are_roughly_right(tmp_path):
    dataset = load(path=str(imbalanced_csv(tmp_path)), target="y", split={"train": 0.6, "val": 0.25, "test": 0.15})
    sizes = split_sizes(dataset)
    assert sum(sizes.values()) == 1_000
    assert sizes["train"] == pytest.approx(600, abs=15)
    assert sizes["val"] == pytest.approx(250, abs=15)
    assert sizes["test"] == pytest.approx(150, abs=15)


def test_stratified_split_keeps_every_class_in_train(tmp_path):
    dataset = load(path=str(imbalanced_csv(tmp_path)), target="y")
    assert set(dataset.part("train")["y"]) == {"common", "middle", "rare", "tiny"}
    # Class proportions are kept in each split (within rounding).
    for name in SPLITS:
        share = (dataset.part(name)["y"] == "middle").mean()
        assert share == pytest.approx(0.25, abs=0.02)


def test_stratified_split_keeps_every_animal_type_in_train():
    dataset = load(dataset="animals")
    assert set(dataset.part("train")["type"]) == set(dataset.frame["type"])


def test_split_is_seeded(classification_csv):
    first, again = load(path=str(classification_csv), target="species"), load(path=str(classification_csv), target="species")
    other = load(seed=1, path=str(classification_csv), target="species")
    np.testing.assert_array_equal(first.split, again.split)
    assert not np.array_equal(first.split, other.split)


def test_regression_split_fractions_are_roughly_right():
    sizes = split_sizes(load(dataset="salary"))
    assert sizes["train"] / 4147 == pytest.approx(0.7, abs=0.01)
    assert sizes["val"] / 4147 == pytest.approx(0.15, abs=0.01)


def test_split_column_assigns_rows_and_is_not_a_feature(tmp_path):
    frame = make_classification_frame()
    frame["fold"] = (["train"] * 6 + [" Val"] * 2 + ["TEST"] * 2) * 6  # case and spaces do not matter
    path = tmp_path / "folds.csv"
    frame.to_csv(path, index=False)
    dataset = load(path=str(path), target="species", split={"column": "fold"})
    assert split_sizes(dataset) == {"train": 36, "val": 12, "test": 12}
    assert "fold" not in dataset.features
    np.testing.assert_array_equal(dataset.split[:10], ["train"] * 6 + ["val"] * 2 + ["test"] * 2)


def test_split_column_with_a_bad_value_names_column_and_value(tmp_path):
    frame = make_classification_frame()
    frame["fold"] = ["train", "val", "test", "holdout"] * 15
    path = tmp_path / "folds.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError) as caught:
        load(path=str(path), target="species", split={"column": "fold"})
    assert "fold" in str(caught.value) and "holdout" in str(caught.value)


def test_split_column_that_is_absent_is_named(classification_csv):
    with pytest.raises(DataError, match="'fold'"):
        load(path=str(classification_csv), target="species", split={"column": "fold"})


def test_too_few_rows_for_a_split_is_a_data_error(tmp_path):
    path = tmp_path / "two.csv"
    pd.DataFrame({"x": [1.0, 2.0], "y": [0.5, 1.5]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="split is empty"):
        load(path=str(path), target="y")


# ---- bad CSVs ----------------------------------------------------------------------------------
def test_missing_csv_names_the_file(tmp_path):
    with pytest.raises(DataError) as caught:
        load(path=str(tmp_path / "nope.csv"), target="y")
    assert "nope.csv" in str(caught.value) and "not found" in str(caught.value)


def test_empty_csv_is_a_data_error(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataError, match="empty"):
        load(path=str(path), target="y")


def test_header_only_csv_is_a_data_error(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("x,y\n")
    with pytest.raises(DataError, match="no data rows"):
        load(path=str(path), target="y")


def test_question_marks_read_as_missing(tmp_path):
    path = tmp_path / "uci.csv"
    path.write_text("x,colour\n1.5,red\n?,blue\n2.5,?\n")
    frame = read_csv(path)
    assert pd.api.types.is_numeric_dtype(frame["x"]) and frame["x"].isna().tolist() == [False, True, False]
    assert frame["colour"].isna().tolist() == [False, False, True]


@pytest.mark.parametrize("separator", [";", "\t"])
def test_semicolon_and_tab_separated_csvs_are_read(tmp_path, separator):
    path = tmp_path / "other.csv"
    path.write_text(separator.join(["x", "y", "z"]) + "\n" + separator.join(["1", "2.5", "a"]) + "\n")
    frame = read_csv(path)
    assert list(frame.columns) == ["x", "y", "z"] and frame.iloc[0].tolist() == [1, 2.5, "a"]


def test_text_identifier_columns_are_not_features(tmp_path):
    frame = make_classification_frame()
    frame.insert(0, "id", [f"id-{i}" for i in range(len(frame))])
    path = tmp_path / "ids.csv"
    frame.to_csv(path, index=False)
    assert load(path=str(path), target="species").features == ["x1", "x2", "colour"]


def test_read_csv_strips_column_names(tmp_path):
    path = tmp_path / "spaces.csv"
    path.write_text(" x , y\n1, 2\n3, 4\n")
    assert list(read_csv(path).columns) == ["x", "y"]


def test_absent_target_names_the_column_and_lists_columns(regression_csv):
    with pytest.raises(DataError) as caught:
        load(path=str(regression_csv), target="cost")
    message = str(caught.value)
    assert "data.target" in message and "'cost'" in message and "price" in message


def test_absent_feature_and_drop_columns_are_named(regression_csv):
    with pytest.raises(DataError, match="data.features.*'area'"):
        load(path=str(regression_csv), target="price", features=["area"])
    with pytest.raises(DataError, match="data.drop.*'id'"):
        load(path=str(regression_csv), target="price", drop=["id"])


def test_text_target_for_regression_names_column_and_value(classification_csv):
    with pytest.raises(DataError) as caught:
        load(path=str(classification_csv), target="species", task="regression")
    message = str(caught.value)
    assert "'species'" in message and "regression" in message
    assert any(repr(label) in message for label in ("cat", "dog", "bird"))


def test_target_used_as_feature_is_rejected(regression_csv):
    with pytest.raises(DataError, match="price"):
        load(path=str(regression_csv), target="price", features=["size", "price"])


def test_numbers_formatted_as_text_are_read_as_numbers(tmp_path):
    path = tmp_path / "formatted.csv"
    path.write_text('income,price,rate,code,city\n"1,250",$40,12.5%,"1,2",Oslo\n"12,000,000","$1,000.50",3%,"3,4",Rome\n7,,,,\n')
    frame = read_csv(path)
    assert frame["income"].tolist() == [1250, 12_000_000, 7]
    assert frame["price"].tolist()[:2] == [40.0, 1000.5] and pd.isna(frame["price"][2])
    assert frame["rate"].tolist()[:2] == [12.5, 3.0]
    # Not a thousands grouping (and a city name is text): these stay categories.
    assert frame["code"].tolist()[:2] == ["1,2", "3,4"] and frame["city"].tolist()[:2] == ["Oslo", "Rome"]


def test_dates_become_fractional_years(tmp_path):
    path = tmp_path / "dates.csv"
    path.write_text("when,stamp,not_a_date,mixed\n2024-07-02,2023/01/01 00:00,2024-13-01,2024-01-01\n"
                    "2023-01-01,2023-07-02T12:00:00Z,2024-01-01,soon\n,2023-01-01,2024-01-02,2024-02-02\n")
    frame = read_csv(path)
    assert frame["when"].tolist()[:2] == [2024.5, 2023.0] and pd.isna(frame["when"][2])
    assert frame["stamp"].tolist() == pytest.approx([2023.0, 2023.5, 2023.0], abs=1e-3)
    assert frame["not_a_date"][0] == "2024-13-01" and frame["mixed"][1] == "soon"


def test_a_date_column_unique_per_row_is_a_feature_not_an_identifier(tmp_path):
    frame = make_regression_frame()
    frame["day"] = pd.date_range("2020-01-01", periods=len(frame), freq="D").strftime("%Y-%m-%d")
    path = tmp_path / "daily.csv"
    frame.to_csv(path, index=False)
    assert "day" in load(path=str(path), target="price").features

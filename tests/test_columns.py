"""Column roles (data/columns.py, cells.py, clean.py): one test per rule, declared roles, and the decision record's
round trip through preprocess.json."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dlrun.config.schema import DataConfig, PreprocessConfig
from dlrun.config.load import validate_config
from dlrun.core.errors import ConfigError, DataError
from dlrun.data.columns import ColumnDecision
from dlrun.data.load import load_dataset
from dlrun.data.preprocess import Preprocessor
from dlrun.metrics.health import overfitting, validation_warnings

N = 200


def base_frame(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=N)
    return pd.DataFrame({"x": x.round(3), "y": np.where(x + rng.normal(0, 0.5, N) > 0, "up", "down")})


def load(tmp_path, frame: pd.DataFrame, **data):
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False)
    return load_dataset(DataConfig(path=str(path), **{"target": "y", **data}), seed=0)


def decision(dataset, column: str) -> ColumnDecision:
    return dataset.columns[column]


# ---- one rule each -------------------------------------------------------------------------------
def test_row_counter_is_ignored_and_said_so(tmp_path):
    frame = base_frame()
    frame.insert(0, "row_id", np.random.default_rng(1).permutation(np.arange(1, N + 1)))  # shuffled 1..N
    frame["rising"] = np.arange(N) * 7 + 1000  # unique and rising with the rows
    dataset = load(tmp_path, frame)
    assert decision(dataset, "row_id").role == "ignore" and "row counter" in decision(dataset, "row_id").why
    assert decision(dataset, "rising").role == "ignore"
    assert dataset.features == ["x"]
    assert any("row_id" in line and "row counter" in line for line in dataset.warnings)


def test_declared_role_overrides_the_row_counter_rule(tmp_path):
    frame = base_frame()
    frame.insert(0, "row_id", np.arange(1, N + 1))
    dataset = load(tmp_path, frame, columns={"row_id": "numeric"})
    assert decision(dataset, "row_id").role == "numeric" and decision(dataset, "row_id").why == "declared"
    assert "row_id" in dataset.features


def test_yes_no_spellings_in_any_case_are_boolean(tmp_path):
    frame = base_frame()
    frame["active"] = np.random.default_rng(2).choice(["yes", "no", "Y", "N", "TRUE", "false"], N)
    dataset = load(tmp_path, frame)
    assert decision(dataset, "active").role == "boolean"
    values = dataset.frame["active"]
    expected = frame["active"].str.lower().isin(["yes", "y", "true"]).astype(float)
    np.testing.assert_array_equal(values.to_numpy(), expected.to_numpy())


def test_numbers_with_a_few_words_are_numeric_and_the_words_are_counted(tmp_path):
    frame = base_frame()
    age = np.random.default_rng(3).integers(18, 80, N).astype(str).astype(object)
    age[:3], age[3:5] = "unknown", "?"
    frame["age"] = age
    dataset = load(tmp_path, frame)
    d = decision(dataset, "age")
    assert d.role == "numeric" and d.missing_tokens == {"unknown": 3, "?": 2}
    assert d.missing_pct == pytest.approx(2.5)
    assert dataset.frame["age"].isna().sum() == 5 and dataset.frame["age"].dtype == float
    assert any("'age'" in line and "'unknown' (3)" in line for line in dataset.warnings)


def test_numbers_with_many_words_stay_text(tmp_path):
    frame = base_frame()
    values = np.random.default_rng(4).integers(1, 9, N).astype(str).astype(object)
    values[:20] = "unknown"  # 10%: not "a few"
    frame["code"] = values
    assert decision(load(tmp_path, frame), "code").role == "category"


def test_dates_in_three_formats_are_one_date_column_day_first_from_the_values(tmp_path):
    frame = base_frame()
    days = pd.Timestamp("2020-01-01") + pd.to_timedelta(np.arange(N) * 3, unit="D")
    formats = np.array(["%Y-%m-%d", "%d/%m/%Y", "%d %b %Y"])[np.arange(N) % 3]
    frame["signup"] = [day.strftime(fmt) for day, fmt in zip(days, formats)]
    dataset = load(tmp_path, frame)
    d = decision(dataset, "signup")
    assert d.role == "date" and d.day_first is True and "dd/mm/yyyy" in d.why
    years = days.year + (days.day_of_year - 1) / np.where(days.is_leap_year, 366, 365)
    np.testing.assert_allclose(dataset.frame["signup"].to_numpy(), years, atol=1e-9)


def test_month_first_dates_are_read_month_first(tmp_path):
    frame = base_frame()
    days = pd.Timestamp("2021-01-01") + pd.to_timedelta(np.arange(N), unit="D")
    frame["when"] = days.strftime("%m/%d/%Y")
    dataset = load(tmp_path, frame)
    assert decision(dataset, "when").day_first is False
    assert dataset.frame["when"].iloc[40] == pytest.approx(2021 + 40 / 365)


def test_dates_that_cannot_tell_day_from_month_are_reported(tmp_path):
    frame = base_frame()
    frame["when"] = [f"{1 + i % 12:02d}/{1 + (i * 5) % 12:02d}/2020" for i in range(N)]
    dataset = load(tmp_path, frame)
    assert decision(dataset, "when").role == "date" and "unclear" in decision(dataset, "when").why
    assert any("'when'" in line and "day first" in line for line in dataset.warnings)


def test_unique_text_per_row_is_an_identifier_and_prose_is_free_text(tmp_path):
    frame = base_frame()
    frame["email"] = [f"user{i}@example.com" for i in range(N)]
    frame["remark"] = [f"customer called about plan {i % 150} twice" for i in range(N)]
    dataset = load(tmp_path, frame)
    assert decision(dataset, "email").role == "ignore" and "identifier" in decision(dataset, "email").why
    assert decision(dataset, "remark").role == "ignore" and "free text" in decision(dataset, "remark").why
    assert dataset.features == ["x"]


def test_categories_are_trimmed_and_case_merged_to_the_most_frequent_spelling(tmp_path):
    frame = base_frame()
    frame["city"] = (["Paris"] * 5 + [" paris", "PARIS ", "Lyon", "lyon "] * 2 + ["Lyon"]) * 10 + ["Nice"] * (N - 140)
    dataset = load(tmp_path, frame)
    d = decision(dataset, "city")
    assert set(dataset.frame["city"]) == {"Paris", "Lyon", "Nice"}
    assert d.merged == {"Lyon": ["lyon"], "Paris": ["PARIS", "paris"]} and d.n_distinct == 3


def test_merge_case_false_keeps_spellings_apart_but_still_trims(tmp_path):
    frame = base_frame()
    frame["city"] = ["Paris", " paris", "PARIS ", "Lyon"] * (N // 4)
    dataset = load(tmp_path, frame, merge_case=False)
    assert set(dataset.frame["city"]) == {"Paris", "paris", "PARIS", "Lyon"}


def test_target_labels_are_merged_and_kept_in_their_most_frequent_spelling(tmp_path):
    frame = base_frame()
    labels = np.where(frame["y"] == "up", "Churned", "Stayed").astype(object)
    labels[::7] = [" churned" if v == "Churned" else "STAYED " for v in labels[::7]]
    frame["y"] = labels
    dataset = load(tmp_path, frame)
    assert dataset.tasks == {"y": "classification"}
    assert sorted(dataset.frame["y"].unique()) == ["Churned", "Stayed"]


# ---- declared roles -----------------------------------------------------------------------------
def test_unknown_column_in_data_columns_names_the_nearest(tmp_path):
    with pytest.raises(DataError, match=r"data.columns: column 'xx' .*did you mean 'x'"):
        load(tmp_path, base_frame(), columns={"xx": "numeric"})


def test_ordinal_is_encoded_by_its_order_and_an_unlisted_value_is_named(tmp_path):
    frame = base_frame()
    frame["size"] = np.array(["small", "Medium", "large"])[np.arange(N) % 3]
    dataset = load(tmp_path, frame, columns={"size": {"ordinal": ["small", "medium", "large"]}})
    assert dataset.frame["size"].tolist()[:3] == [0.0, 1.0, 2.0]
    frame.loc[4, "size"] = "huge"
    with pytest.raises(DataError, match=r"'size'.*row 5.*'huge'"):
        load(tmp_path, frame, columns={"size": {"ordinal": ["small", "medium", "large"]}})


def test_ordinal_without_its_values_is_a_config_error():
    with pytest.raises(ConfigError, match="data.columns.size: ordinal needs its values"):
        validate_config({"data": {"path": "x.csv", "target": "y", "columns": {"size": "ordinal"}}})


def test_declared_numeric_with_text_names_column_row_and_value(tmp_path):
    frame = base_frame()
    frame["n"] = ["1", "2", "3x"] + ["4"] * (N - 3)
    with pytest.raises(DataError, match=r"'n'.*row 3.*'3x'"):
        load(tmp_path, frame, columns={"n": "numeric"})


def test_declared_category_target_is_classification(tmp_path):
    frame = base_frame()
    frame["y"] = np.arange(N) % 25  # 25 integer codes: regression unless declared
    assert load(tmp_path, frame).tasks == {"y": "regression"}
    assert load(tmp_path, frame, columns={"y": "category"}).tasks == {"y": "classification"}


# ---- preprocessing: missing indicators and the stored decisions ---------------------------------
def fitted_on(dataset, **cfg) -> Preprocessor:
    prep = Preprocessor(PreprocessConfig(**cfg), dataset.features, dataset.targets, dataset.tasks, dataset.columns)
    return prep.fit(dataset.part("train"))


def test_numeric_columns_with_missing_values_get_an_indicator_unless_turned_off(tmp_path):
    frame = base_frame()
    frame.loc[::10, "x"] = np.nan
    dataset = load(tmp_path, frame)
    prep = fitted_on(dataset)
    assert prep.feature_names_[-1] == "x (missing)" and dataset.columns["x"].encoded_width == 2
    X = prep.transform_features(dataset.frame)
    np.testing.assert_array_equal(X[:, -1], dataset.frame["x"].isna().to_numpy(dtype=np.float32))
    assert "x (missing)" not in fitted_on(dataset, missing_indicators=False).feature_names_


def test_saved_decisions_clean_new_rows_like_the_training_rows(tmp_path):
    frame = base_frame()
    frame["city"] = ["Paris", "Paris", " paris", "Lyon"] * (N // 4)
    frame["active"] = ["yes", "No"] * (N // 2)
    frame["age"] = ["30", "40", "unknown", "50"] * (N // 4)
    dataset = load(tmp_path, frame)
    prep = fitted_on(dataset)
    reopened = Preprocessor.from_dict(json.loads(json.dumps(prep.to_dict())))
    new = pd.DataFrame({"x": [0.1, 0.2], "city": ["PARIS ", "Oslo"], "active": ["Y", "n"], "age": ["n/a", "35"]})
    cleaned, counts = reopened.read_rows(new)
    assert cleaned["city"].tolist() == ["Paris", "Oslo"] and cleaned["active"].tolist() == [1.0, 0.0]
    assert np.isnan(cleaned["age"][0]) and counts["age"].tokens == {"n/a": 1}
    np.testing.assert_array_equal(reopened.transform_features(cleaned), prep.transform_features(cleaned))
    assert reopened.column_table() == prep.column_table()


# ---- warnings ------------------------------------------------------------------------------------
def test_small_validation_split_is_warned_about():
    assert validation_warnings(30, {}, "val_loss") and not validation_warnings(300, {}, "val_loss")
    lines = validation_warnings(300, {"y": {"a": 200, "b": 4}}, "val_accuracy")
    assert len(lines) == 1 and "b 4" in lines[0]
    assert validation_warnings(30, {}, None) == []  # no early stopping: nothing watches the split


def test_overfitting_is_named_with_the_epoch_it_began():
    history = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": abs(e - 4) * 0.05 + 0.5} for e in range(1, 15)]
    found = overfitting(history)
    assert found["began_epoch"] == 5 and found["best_val_epoch"] == 4 and "epoch 5" in found["message"]
    steady = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.0 / e} for e in range(1, 15)]
    assert overfitting(steady) is None

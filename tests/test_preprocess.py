"""Stage 2, frame -> arrays: fitted on train only, JSON round trip, inverse transforms, predict-row checks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dlrun.config.schema import PreprocessConfig
from dlrun.core.errors import DataError, RunError
from dlrun.data.encoding import MISSING
from dlrun.data.preprocess import Preprocessor

from conftest import make_classification_frame, make_regression_frame

FEATURES = ["size", "rooms", "city"]


def fitted(frame: pd.DataFrame | None = None, **cfg) -> Preprocessor:
    frame = make_regression_frame() if frame is None else frame
    return Preprocessor(PreprocessConfig(**cfg), FEATURES, ["price"], {"price": "regression"}).fit(frame)


def test_numeric_and_categorical_columns_are_told_apart():
    prep = fitted()
    assert list(prep.numeric_) == ["size", "rooms"]
    assert list(prep.categorical_) == ["city"]
    assert prep.feature_names_[:2] == ["size", "rooms"]
    assert {name for name in prep.feature_names_ if name.startswith("city=")} == {
        "city=Paris", "city=Lyon", "city=Nice", f"city={MISSING}"
    }


def test_statistics_come_from_the_fitted_frame_only():
    train, other = make_regression_frame(seed=0), make_regression_frame(seed=1)
    other["size"] = other["size"] * 10 + 500  # very different statistics
    prep = fitted(train)
    size = train["size"]
    assert prep.numeric_["size"]["fill"] == pytest.approx(size.median())
    X = prep.transform_features(other)
    center, scale = prep.numeric_["size"]["center"], prep.numeric_["size"]["scale"]
    expected = (other["size"].fillna(size.median()) - center) / scale
    np.testing.assert_allclose(X[:, 0], expected, rtol=1e-5)
    assert X[:, 0].mean() > 10  # scaled with train's statistics, so the shifted column stays far from 0


def test_missing_numeric_values_are_imputed_with_the_train_median():
    frame = pd.DataFrame({"size": [1.0, np.nan, 3.0, 10.0, np.nan], "rooms": [1, 2, 3, 4, 5],
                          "city": ["a", "b", "a", "b", "a"], "price": [1.0, 2.0, 3.0, 4.0, 5.0]})
    prep = fitted(frame, scale="none")
    assert prep.numeric_["size"]["fill"] == 3.0
    assert prep.numeric_["size"]["n_missing"] == 2
    np.testing.assert_array_equal(prep.transform_features(frame)[:, 0], [1.0, 3.0, 3.0, 10.0, 3.0])


def test_mean_imputation_when_configured():
    frame = pd.DataFrame({"size": [1.0, np.nan, 3.0, 11.0], "rooms": [1, 2, 3, 4], "city": list("abab"), "price": [1.0, 2, 3, 4]})
    prep = fitted(frame, numeric_impute="mean", scale="none")
    assert prep.numeric_["size"]["fill"] == pytest.approx(5.0)
    np.testing.assert_array_equal(prep.transform_features(frame)[:, 0], [1.0, 5.0, 3.0, 11.0])  # the median would give 3


@pytest.mark.parametrize("choice, row", [("missing", {"city=a": 0, "city=b": 0, f"city={MISSING}": 1}),
                                         ("most_frequent", {"city=a": 1, "city=b": 0})])
def test_each_categorical_imputation_choice_encodes_a_missing_value_its_way(choice, row):
    frame = pd.DataFrame({"size": [1.0, 2, 3, 4], "rooms": [1, 2, 3, 4], "city": ["a", "a", "b", np.nan], "price": [1.0, 2, 3, 4]})
    prep = fitted(frame, categorical_impute=choice)
    encoded = dict(zip(prep.feature_names_, prep.transform_features(frame)[3]))
    assert {name: value for name, value in encoded.items() if name.startswith("city=")} == row


def test_standard_scaling_gives_zero_mean_unit_std_on_train():
    frame = make_regression_frame(n_rows=200)
    X = fitted(frame).transform_features(frame)
    np.testing.assert_allclose(X[:, :2].mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(X[:, :2].std(axis=0), 1.0, atol=1e-4)


def test_minmax_scaling_maps_train_to_unit_interval():
    frame = make_regression_frame(n_rows=200)
    X = fitted(frame, scale="minmax").transform_features(frame)
    assert X[:, :2].min() == pytest.approx(0.0, abs=1e-6) and X[:, :2].max() == pytest.approx(1.0, abs=1e-6)


def test_constant_numeric_column_does_not_divide_by_zero():
    frame = make_regression_frame()
    frame["rooms"] = 3
    X = fitted(frame).transform_features(frame)
    assert np.isfinite(X).all()
    np.testing.assert_array_equal(X[:, 1], 0.0)


def test_categories_are_one_hot_encoded():
    frame = make_regression_frame()
    prep = fitted(frame)
    X = prep.transform_features(frame)
    onehot = X[:, 2:2 + len(prep.categorical_["city"]["categories"])]  # then the missing indicator of size
    np.testing.assert_array_equal(onehot.sum(axis=1), 1.0)  # exactly one category per row (missing is its own)
    paris = prep.feature_names_.index("city=Paris")
    np.testing.assert_array_equal(X[:, paris], (frame["city"] == "Paris").to_numpy(dtype=np.float32))
    missing = prep.feature_names_.index(f"city={MISSING}")
    np.testing.assert_array_equal(X[:, missing], frame["city"].isna().to_numpy(dtype=np.float32))


def test_most_frequent_imputation_fills_missing_categories():
    frame = make_regression_frame()
    prep = fitted(frame, categorical_impute="most_frequent")
    most_frequent = frame["city"].value_counts().index[0]
    assert prep.categorical_["city"]["fill"] == most_frequent
    X = prep.transform_features(frame)
    column = prep.feature_names_.index(f"city={most_frequent}")
    assert (X[frame["city"].isna().to_numpy(), column] == 1.0).all()


def test_unseen_category_encodes_as_all_zeros_not_a_crash():
    prep = fitted()
    rows = pd.DataFrame({"size": [50.0, 60.0], "rooms": [2, 3], "city": ["Marseille", "Paris"]})
    X = prep.transform_features(rows)
    onehot = X[:, 2:2 + len(prep.categorical_["city"]["categories"])]  # then the missing indicator of size
    np.testing.assert_array_equal(onehot[0], 0.0)
    assert onehot[1].sum() == 1.0


def test_max_categories_keeps_the_most_frequent():
    frame = make_regression_frame()
    frame["city"] = ["Paris"] * 30 + ["Lyon"] * 20 + ["Nice"] * 10
    prep = fitted(frame, max_categories=2)
    assert prep.categorical_["city"]["categories"] == ["Paris", "Lyon"]
    assert prep.transform_features(frame.tail(1))[0, 2:].sum() == 0.0  # Nice is now rare: all zeros


def test_pandas_string_dtype_is_categorical():
    frame = make_regression_frame()
    frame["city"] = frame["city"].astype("string")
    assert list(fitted(frame).categorical_) == ["city"]


def test_state_round_trips_through_json_with_identical_output():
    frame = make_regression_frame()
    prep = fitted(frame)
    reloaded = Preprocessor.from_dict(json.loads(json.dumps(prep.to_dict())))
    other = make_regression_frame(seed=3)
    other.loc[0, "city"] = "Marseille"  # unseen category too
    np.testing.assert_array_equal(reloaded.transform_features(other), prep.transform_features(other))
    for target, values in prep.transform_targets(other).items():
        np.testing.assert_array_equal(reloaded.transform_targets(other)[target], values)
    assert reloaded.feature_names_ == prep.feature_names_
    assert reloaded.output_sizes() == prep.output_sizes()


def test_classification_state_round_trips_through_json():
    frame = make_classification_frame()
    prep = Preprocessor(PreprocessConfig(), ["x1", "x2", "colour"], ["species"], {"species": "classification"}).fit(frame)
    reloaded = Preprocessor.from_dict(json.loads(json.dumps(prep.to_dict())))
    assert reloaded.classes("species") == prep.classes("species") == ["bird", "cat", "dog"]
    np.testing.assert_array_equal(reloaded.transform_targets(frame)["species"], prep.transform_targets(frame)["species"])


def test_from_dict_rejects_a_foreign_state():
    with pytest.raises(RunError):
        Preprocessor.from_dict({"something": "else"})
    state = fitted().to_dict()
    with pytest.raises(RunError, match="version"):
        Preprocessor.from_dict({**state, "version": 999})


def test_to_original_units_inverts_the_target_scaling():
    frame = make_regression_frame()
    prep = fitted(frame)
    scaled = prep.transform_targets(frame)["price"]
    assert scaled.mean() == pytest.approx(0.0, abs=1e-5) and scaled.std() == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(prep.to_original_units("price", scaled.astype(np.float64)), frame["price"], rtol=1e-6)


@pytest.mark.parametrize(
    "labels",
    [["bird", "cat", "dog", "cat", "bird", "dog"], [3, 1, 2, 1, 3, 2], [True, False, True, False, True, False]],
    ids=["strings", "ints", "bools"],
)
def test_class_labels_round_trip(labels):
    frame = pd.DataFrame({"size": np.arange(6.0), "rooms": np.arange(6), "city": list("abcabc"), "label": labels})
    prep = Preprocessor(PreprocessConfig(), FEATURES, ["label"], {"label": "classification"}).fit(frame)
    prep = Preprocessor.from_dict(json.loads(json.dumps(prep.to_dict())))
    codes = prep.transform_targets(frame)["label"]
    assert codes.dtype == np.int64 and codes.min() == 0 and codes.max() == len(set(labels)) - 1
    assert [prep.classes("label")[code] for code in codes] == labels
    assert prep.output_sizes() == {"label": len(set(labels))}


def test_integer_labels_read_as_floats_are_the_same_classes():
    train = pd.DataFrame({"size": [1.0, 2.0, 3.0], "rooms": [1, 2, 3], "city": list("abc"), "label": [0, 1, 2]})
    later = train.assign(label=[2.0, 1.0, 0.0])
    prep = Preprocessor(PreprocessConfig(), FEATURES, ["label"], {"label": "classification"}).fit(train)
    np.testing.assert_array_equal(prep.transform_targets(later)["label"], [2, 1, 0])


def test_unknown_class_at_transform_is_a_data_error():
    frame = make_classification_frame()
    prep = Preprocessor(PreprocessConfig(), ["x1", "x2", "colour"], ["species"], {"species": "classification"}).fit(frame)
    with pytest.raises(DataError, match="'species'.*'fish'"):
        prep.transform_targets(frame.assign(species="fish"))


# ---- rows to predict, checked against the fitted schema ------------------------------------------
def test_predict_rows_in_any_order_with_extra_columns_give_the_same_features():
    frame = make_regression_frame()
    prep = fitted(frame)
    shuffled = frame[["city", "price", "rooms", "size"]].assign(note="ignored")
    np.testing.assert_array_equal(prep.transform_features(shuffled), prep.transform_features(frame))


def test_missing_feature_column_names_the_column():
    prep = fitted()
    rows = make_regression_frame().drop(columns=["rooms"])
    with pytest.raises(DataError) as caught:
        prep.transform_features(rows)
    assert "rooms" in str(caught.value) and "missing" in str(caught.value)


def test_text_in_numeric_column_names_column_and_value():
    prep = fitted()
    rows = make_regression_frame().astype({"size": object})
    rows.loc[4, "size"] = "big"
    with pytest.raises(DataError) as caught:
        prep.transform_features(rows)
    assert "'size'" in str(caught.value) and "'big'" in str(caught.value)


def test_numeric_text_and_blanks_in_numeric_column_are_accepted():
    prep = fitted()
    frame = make_regression_frame()
    as_text = frame.assign(size=[None if pd.isna(v) else str(v) for v in frame["size"]])
    np.testing.assert_allclose(prep.transform_features(as_text), prep.transform_features(frame), rtol=1e-6)


@pytest.mark.parametrize("damage", [
    lambda s: s.update(numeric=[1, 2]),
    lambda s: next(iter(s["numeric"].values())).pop("center"),
    lambda s: next(iter(s["categorical"].values())).update(categories=5),
    lambda s: next(iter(s["target_state"].values())).pop("mean"),
    lambda s: next(iter(s["numeric"].values())).update(scale=None),
])
def test_damaged_inner_state_is_a_run_error(damage):
    import copy

    from dlrun.core.errors import RunError

    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "c": ["x", "y", "x"], "t": [1.0, 2.0, 4.0]})
    state = Preprocessor(PreprocessConfig(), ["a", "c"], ["t"], {"t": "regression"}).fit(frame).to_dict()
    damaged = copy.deepcopy(state)
    damage(damaged)
    with pytest.raises(RunError, match="not a dlrun preprocessing state"):
        Preprocessor.from_dict(damaged)
    Preprocessor.from_dict(state)  # the undamaged state still loads

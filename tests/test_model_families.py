"""Model families (plain MLP, TabM, numeric embeddings) and the scalings they are usually paired with: shapes,
the ensemble's loss and prediction, the fast-step fallback, and the whole run life (train, resume, eval, predict,
check, transfer) for every family."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from sklearn.preprocessing import QuantileTransformer

from dlrun.config.schema import ModelConfig, PreprocessConfig
from dlrun.config.load import validate_config
from dlrun.core.errors import ConfigError
from dlrun.data.preprocess import Preprocessor
from dlrun.data.scaling import InputLayout, apply_scaler, fit_scaler, invert_scaler
from dlrun.model.mlp import MLP, build_model
from dlrun.model.tabm import TabM
from dlrun.run.directory import open_run
from dlrun.run.runner import resume, train
from dlrun.training.fast_step import unsupported
from dlrun.training.losses import Criterion

from conftest import FAST, InterruptAfter, make_classification_frame, make_regression_frame, merge, run_cli

FAMILIES = {
    "tabm": {"model": {"type": "tabm", "k": 4}},
    "periodic": {"model": {"num_embeddings": "periodic", "embedding_dim": 4}},
    "piecewise": {"model": {"type": "tabm", "k": 3, "num_embeddings": "piecewise_linear", "n_bins": 6, "embedding_dim": 4},
                  "preprocess": {"scale": "quantile"}},
}


def _config(tmp_path, family: dict, kind: str = "regression", **extra):
    frame, target = (make_regression_frame(120), "price") if kind == "regression" else (make_classification_frame(120), "species")
    path = tmp_path / f"{kind}.csv"
    frame.to_csv(path, index=False)
    return validate_config(merge(merge(FAST, {"data": {"path": str(path), "target": target}}), merge(family, extra)))


# ---- the networks ------------------------------------------------------------------------------
def test_tabm_returns_every_member_in_training_and_their_average_in_eval():
    model = build_model(5, {"kind": 3, "value": 1}, ModelConfig(type="tabm", k=4, hidden=[8, 8], dropout=0.0), seed=0)
    X = torch.randn(6, 5)
    members = model(X)
    assert members["kind"].shape == (6, 4, 3) and members["value"].shape == (6, 4, 1)
    model.eval()
    ensemble = model(X)
    assert ensemble["kind"].shape == (6, 3) and ensemble["value"].shape == (6, 1)
    # class heads: softmax of the eval output is the members' mean probability; regression: their mean value
    torch.testing.assert_close(ensemble["kind"].softmax(1), members["kind"].softmax(-1).mean(1))
    torch.testing.assert_close(ensemble["value"], members["value"].mean(1))
    torch.testing.assert_close(model.member_outputs(X)["kind"], members["kind"].softmax(-1))


def test_ensemble_loss_is_the_mean_of_the_members_losses():
    prep = Preprocessor(PreprocessConfig(), ["x1", "x2", "colour"], ["species"], {"species": "classification"})
    frame = make_classification_frame(30)
    prep.fit(frame)
    y = {"species": torch.tensor(prep.transform_targets(frame)["species"])}
    cfg = validate_config(merge(FAST, {"data": {"dataset": "animals"}, "train": {"label_smoothing": 0.1}})).train
    criterion = Criterion(prep, cfg, y)
    logits = torch.randn(30, 5, 3)  # (B, k, classes)
    expected = torch.stack([F.cross_entropy(logits[:, i], y["species"], label_smoothing=0.1) for i in range(5)]).mean()
    torch.testing.assert_close(criterion({"species": logits}, y), expected)


def test_the_plain_mlp_is_unchanged_and_keeps_the_fast_step(tmp_path):
    cfg = _config(tmp_path, {})
    model = build_model(6, {"price": 1}, cfg.model, 0, InputLayout(2, 4))
    assert type(model) is MLP and unsupported(model, cfg) is None
    assert list(dict(model.named_parameters())) == ["trunk.0.weight", "trunk.0.bias", "trunk.2.weight", "trunk.2.bias",
                                                     "heads.0.weight", "heads.0.bias"]


@pytest.mark.parametrize("family", ["tabm", "periodic"])
def test_new_families_fall_back_to_autograd_and_say_why(tmp_path, family):
    run = train(_config(tmp_path, FAMILIES[family]), tmp_path / "runs")
    step = json.loads((run.run_dir / "run.json").read_text())["train_step"]
    assert step["path"] == "general" and ("tabm" in step["reason"] or "embeddings" in step["reason"])


def test_tabm_rejects_norm_layers():
    with pytest.raises(ConfigError, match="model.norm"):
        validate_config(merge(FAST, {"data": {"dataset": "animals"}, "model": {"type": "tabm", "norm": "batch"}}))


# ---- the run life ------------------------------------------------------------------------------
@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_reopened_run_predicts_exactly_what_training_wrote(tmp_path, family):
    run = train(_config(tmp_path, FAMILIES[family]), tmp_path / "runs")
    fitted = open_run(run.run_dir)
    written = pd.read_csv(run.run_dir / "predictions.csv")
    test_rows = pd.read_csv(tmp_path / "regression.csv").loc[written.index]  # any rows: compare a fresh forward pass
    state = json.loads((run.run_dir / "preprocess.json").read_text())
    if family == "piecewise":
        assert len(state["bins"]) == 2 and all(len(edges) >= 2 for edges in state["bins"])  # size, rooms
        assert isinstance(fitted.model, TabM)
    X = torch.from_numpy(fitted.prep.transform_features(test_rows))
    again = open_run(run.run_dir)
    with torch.no_grad():
        torch.testing.assert_close(fitted.model(X)["price"], again.model(X)["price"])


@pytest.mark.parametrize("family", ["tabm", "piecewise"])
def test_an_interrupted_run_resumes_to_the_same_metrics(tmp_path, family):
    extra = {"train": {"epochs": 6, "early_stopping": None}, "model": {"dropout": 0.2}}
    straight = train(_config(tmp_path, FAMILIES[family], **extra), tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        train(_config(tmp_path, FAMILIES[family], **extra), tmp_path / "b", callbacks=[InterruptAfter(3)])
    (run_dir,) = (tmp_path / "b").iterdir()
    resume(run_dir)
    assert json.loads((run_dir / "metrics.json").read_text()) == json.loads((straight.run_dir / "metrics.json").read_text())


def test_tabm_fine_tunes_from_a_tabm_run_with_frozen_layers(tmp_path):
    source = train(_config(tmp_path, FAMILIES["tabm"], kind="classification"), tmp_path / "runs")
    tuned = train(_config(tmp_path, FAMILIES["tabm"], kind="classification",
                          train={"init_from": str(source.run_dir), "freeze": [0], "epochs": 2, "early_stopping": None}),
                  tmp_path / "runs")
    before = torch.load(source.run_dir / "checkpoints" / "best.pt", weights_only=True)["model"]
    after = torch.load(tuned.run_dir / "checkpoints" / "best.pt", weights_only=True)["model"]
    assert any("loaded 10 of 10" in note for note in tuned.notes)  # 2 layers x (weight, r, s, bias), 1 head x 2
    for name in ("trunk.0.weight", "trunk.0.r", "trunk.0.s", "trunk.0.bias"):
        assert torch.equal(before[name], after[name])
    assert not torch.equal(before["trunk.2.weight"], after["trunk.2.weight"])
    rows = pd.read_csv(tuned.run_dir / "diagnostics.csv")
    assert {"layer 1", "layer 2", "head species"} <= set(rows["layer"])


@pytest.mark.slow
def test_cli_trains_checks_evaluates_and_predicts_a_tabm_with_embeddings(tmp_path, make_config, classification_csv):
    config = make_config({"path": str(classification_csv), "target": "species"},
                         model={"type": "tabm", "k": 4, "num_embeddings": "periodic", "embedding_dim": 4},
                         preprocess={"scale": "robust"})
    trained = run_cli("train", config, "--runs-dir", tmp_path / "runs")
    assert trained.returncode == 0, trained.stderr
    run_dir = trained.stdout.strip().splitlines()[-1]
    checked = run_cli("check", config)
    evaluated = run_cli("eval", run_dir)
    predicted = run_cli("predict", run_dir, classification_csv, "--output", tmp_path / "out.csv")
    assert checked.returncode == 0 and evaluated.returncode == 0 and predicted.returncode == 0, checked.stderr + predicted.stderr
    assert set(pd.read_csv(tmp_path / "out.csv")["species_pred"]) <= {"cat", "dog", "bird"}


@pytest.mark.slow
def test_a_grid_sweep_tries_every_family_and_scaling(tmp_path):
    make_regression_frame(100).to_csv(tmp_path / "houses.csv", index=False)
    space = {"model.type": {"choice": ["mlp", "tabm"]}, "model.num_embeddings": {"choice": ["none", "piecewise_linear"]},
             "preprocess.scale": {"choice": ["robust"]}}
    config = tmp_path / "houses.yaml"
    config.write_text(json.dumps(merge(FAST, {"name": "houses", "data": {"path": str(tmp_path / "houses.csv"), "target": "price"},
                                              "model": {"k": 2}, "search": {"sampler": "grid", "space": space}})))
    result = run_cli("sweep", config, "--runs-dir", tmp_path / "runs")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(tmp_path / "runs" / "sweeps" / "houses" / "trials.csv")
    assert set(table["state"]) == {"complete"} and len(table) == 4
    assert set(zip(table["param:model.type"], table["param:model.num_embeddings"])) == {
        ("mlp", "none"), ("mlp", "piecewise_linear"), ("tabm", "none"), ("tabm", "piecewise_linear")}


# ---- scaling -----------------------------------------------------------------------------------
def test_robust_scaling_is_median_over_iqr_then_smoothly_clipped():
    values = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 1000.0])
    state = fit_scaler("robust", values)
    z = (values - 2.5) / 2.5  # median 2.5, IQR 3.75 - 1.25
    np.testing.assert_allclose(apply_scaler(state, values), z / np.sqrt(1 + (z / 3) ** 2))
    assert apply_scaler(state, values).max() < 3  # the outlier lands near 3, not at 399


def test_quantile_scaling_matches_scikit_learn_and_inverts_for_targets():
    rng = np.random.default_rng(0)
    values = rng.lognormal(size=600)
    state = fit_scaler("quantile", values)
    reference = QuantileTransformer(n_quantiles=20, output_distribution="normal").fit(values[:, None])  # 600 / 30
    probe = np.quantile(values, [0.1, 0.3, 0.5, 0.7, 0.9])
    np.testing.assert_allclose(apply_scaler(state, probe), reference.transform(probe[:, None])[:, 0], atol=1e-3)
    np.testing.assert_allclose(invert_scaler(state, apply_scaler(state, probe)), probe, rtol=1e-4)


def test_quantile_scaled_targets_come_back_in_original_units(tmp_path):
    run = train(_config(tmp_path, {"preprocess": {"scale": "quantile"}}), tmp_path / "runs")
    state = json.loads((run.run_dir / "preprocess.json").read_text())
    assert "quantiles" in state["target_state"]["price"] and "quantiles" in state["numeric"]["size"]
    predicted = pd.read_csv(run.run_dir / "predictions.csv")["price_pred"]
    assert predicted.between(50_000, 500_000).all()  # dollars, not normal scores


# ---- categorical embeddings --------------------------------------------------------------------
def _many_cities(n_rows: int = 120) -> pd.DataFrame:
    frame = make_regression_frame(n_rows)
    frame["city"] = [f"town{i % 12}" for i in range(n_rows)]
    return frame


def test_categories_above_the_threshold_become_one_code_column():
    frame = _many_cities()
    prep = Preprocessor(PreprocessConfig(embed_categories_above=5), ["size", "rooms", "city"], ["price"],
                        {"price": "regression"}).fit(frame)
    assert prep.feature_names_ == ["size", "rooms", *[f"{c} (missing)" for c in prep.indicators_], "city"]  # codes last
    layout = prep.input_layout()
    assert (layout.n_numeric, layout.n_onehot, layout.cardinalities) == (2, len(prep.indicators_), [12])  # indicators pass through like one-hot
    unseen = frame.head(2).assign(city=["town3", "atlantis"])
    codes = prep.transform_features(unseen)[:, -1]  # the code column comes last
    assert codes[1] == 0 and codes[0] == 1 + prep.categorical_["city"]["categories"].index("town3")
    model = build_model(len(prep.feature_names_), {"price": 1}, ModelConfig(hidden=[8]), 0, layout)
    assert model.inputs.categories[0].num_embeddings == 13  # 12 kept categories and the unseen one
    assert model(torch.from_numpy(prep.transform_features(frame))).keys() == {"price"}


def test_embedded_categories_train_and_reopen(tmp_path):
    _many_cities().to_csv(tmp_path / "towns.csv", index=False)
    cfg = validate_config(merge(FAST, {"data": {"path": str(tmp_path / "towns.csv"), "target": "price"},
                                       "preprocess": {"embed_categories_above": 5}}))
    run = train(cfg, tmp_path / "runs")
    assert json.loads((run.run_dir / "preprocess.json").read_text())["categorical"]["city"]["embed"] is True
    assert "inputs.categories.0.weight" in open_run(run.run_dir).model.state_dict()


def test_smote_and_category_codes_do_not_mix():
    with pytest.raises(ConfigError, match="augment.smote"):
        validate_config(merge(FAST, {"data": {"dataset": "animals"}, "augment": {"smote": True},
                                     "preprocess": {"embed_categories_above": 5}}))

"""k-fold cross-validation and bagged ensembles (dlrun/data/splits.py, dlrun/folds/): folds that keep the test split,
groups and time order; preprocessing fitted inside each fold; out-of-fold predictions; the ensemble as one model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import FAST, InterruptAfter, make_classification_frame, make_regression_frame, merge, run_cli_many
from dlrun.config.load import validate_config
from dlrun.config.schema import Config
from dlrun.core.errors import ConfigError, DataError
from dlrun.data.load import load_dataset
from dlrun.folds.cv import cross_validate, member_dir, resume_cv
from dlrun.folds.summary import interval
from dlrun.run import layout
from dlrun.run.record import read_record
from dlrun.training.state import Callback


def config(data: dict, **sections) -> Config:
    return validate_config(merge(FAST, {"data": data, **sections}))


def fold_splits(cfg: Config, k: int, repeat: int = 0) -> list[np.ndarray]:
    splits = []
    for index in range(1, k + 1):
        raw = merge(cfg.model_dump(mode="json"), {"data": {"split": {"fold": {"k": k, "index": index, "repeat": repeat}}}})
        splits.append(load_dataset(validate_config(raw).data, cfg.seed).split)
    return splits


# ---- the folds -----------------------------------------------------------------------------------
def test_folds_keep_the_plain_runs_test_rows_and_validate_every_other_row_once(tmp_path):
    make_classification_frame(90).to_csv(tmp_path / "pets.csv", index=False)
    cfg = config({"path": str(tmp_path / "pets.csv"), "target": "species"})
    plain = load_dataset(cfg.data, cfg.seed)
    splits = fold_splits(cfg, 3)
    for split in splits:
        assert ((split == "test") == (plain.split == "test")).all()
    validated = np.sum([split == "val" for split in splits], axis=0)
    assert (validated[plain.split != "test"] == 1).all() and (validated[plain.split == "test"] == 0).all()
    # stratified: every fold validates on a share of each class within one row of the others
    labels = plain.frame["species"].to_numpy()
    for species in np.unique(labels):
        per_fold = [int(np.sum((split == "val") & (labels == species))) for split in splits]
        assert max(per_fold) - min(per_fold) <= 1, (species, per_fold)
    # another repeat deals the rows into other folds, the test rows stay
    again = fold_splits(cfg, 3, repeat=1)
    assert ((again[0] == "test") == (plain.split == "test")).all() and not (again[0] == splits[0]).all()


def test_groups_never_share_a_split_or_a_fold(tmp_path):
    frame = make_regression_frame(120)
    frame["patient"] = np.repeat(np.arange(30), 4)
    frame.to_csv(tmp_path / "houses.csv", index=False)
    cfg = config({"path": str(tmp_path / "houses.csv"), "target": "price", "drop": ["patient"],
                  "split": {"group": "patient"}})
    plain = load_dataset(cfg.data, cfg.seed)
    patients = plain.frame["patient"].to_numpy()
    for split in [plain.split, *fold_splits(cfg, 4)]:
        for name in ("train", "val", "test"):
            assert not set(patients[split == name]) & set(patients[split != name]), name


def test_time_ordered_folds_validate_on_later_rows_than_they_train_on(tmp_path):
    frame = make_regression_frame(100)
    frame["day"] = pd.date_range("2024-01-01", periods=100).astype(str)[np.random.default_rng(1).permutation(100)]
    frame.to_csv(tmp_path / "houses.csv", index=False)
    cfg = config({"path": str(tmp_path / "houses.csv"), "target": "price", "drop": ["day"], "split": {"order": "day"}})
    plain = load_dataset(cfg.data, cfg.seed)
    day = pd.to_datetime(plain.frame["day"]).to_numpy()
    assert day[plain.split == "test"].min() > day[plain.split == "val"].max() > day[plain.split == "train"].max()
    for split in fold_splits(cfg, 3):
        assert day[split == "val"].min() > day[split == "train"].max()
        assert ((split == "test") == (plain.split == "test")).all()


def test_too_few_groups_for_the_folds_is_a_data_error_before_any_directory(tmp_path):
    frame = make_regression_frame(60)
    frame["site"] = np.repeat(["a", "b", "c", "d"], 15)
    frame.to_csv(tmp_path / "houses.csv", index=False)
    cfg = config({"path": str(tmp_path / "houses.csv"), "target": "price", "split": {"group": "site"}})
    with pytest.raises(DataError, match="groups outside the test split, too few for 5 folds"):
        cross_validate(cfg, tmp_path / "runs", folds=5)
    with pytest.raises(ConfigError, match="--folds must be between 2"):
        cross_validate(cfg, tmp_path / "runs", folds=1)
    assert not (tmp_path / "runs").exists()


def test_the_interval_is_the_t_interval_of_the_mean():
    result = interval([1.0, 2.0, 4.0])
    assert result["mean"] == pytest.approx(7 / 3) and result["std"] == pytest.approx(1.5275252, rel=1e-6)
    half = 4.303 * result["std"] / math.sqrt(3)  # t(0.975, 2 degrees of freedom)
    assert result["ci95"] == pytest.approx([7 / 3 - half, 7 / 3 + half])


# ---- no leakage ------------------------------------------------------------------------------------
def test_no_leakage_a_row_id_feature_memorised_in_training_does_not_help_out_of_fold(tmp_path):
    """Random labels and a row-id category: each fold model learns its training rows by heart (the id helps there),
    yet scores chance on its validation fold. A split that let validation rows into training, or an out-of-fold
    prediction made by a model that trained on the row, scores near 1 here; and each fold's preprocessing is fitted
    on its own training rows only (its imputed median is theirs, not all non-test rows')."""
    rng = np.random.default_rng(0)
    n = 80
    frame = pd.DataFrame({"row_id": [f"r{i}" for i in range(n)], "x": rng.normal(size=n).round(3),
                          "label": rng.choice(["a", "b"], n)})
    frame.loc[::7, "x"] = np.nan
    frame.to_csv(tmp_path / "noise.csv", index=False)
    cfg = config({"path": str(tmp_path / "noise.csv"), "target": "label", "columns": {"row_id": "category"}},
                 preprocess={"max_categories": 1000}, optimizer={"lr": 0.05},
                 train={"epochs": 40, "early_stopping": None})
    result = cross_validate(cfg, tmp_path / "runs", folds=3)
    oof = pd.read_csv(result.cv_dir / layout.OOF_PREDICTIONS)
    assert (oof["label_pred"] == oof["label"]).mean() < 0.75
    assert result.summary["out_of_fold"]["label"]["accuracy"] < 0.75
    for fold in result.folds:
        assert fold.metrics["train"]["label"]["accuracy"] > 0.95  # the id does help on rows a model trained on
        dataset = load_dataset(validate_config(json.loads(json.dumps(_config_of(fold.run_dir)))).data, cfg.seed)
        train_rows = dataset.part("train")
        fitted = json.loads((fold.run_dir / layout.PREPROCESS).read_text())
        assert fitted["numeric"]["x"]["fill"] == pytest.approx(train_rows["x"].median())  # median imputation
        assert fitted["numeric"]["x"]["n_missing"] == train_rows["x"].isna().sum()
        assert not set(train_rows["row_id"]) & set(oof.loc[oof["fold"] == fold.fold, "row_id"])


def _config_of(run_dir: Path) -> dict:
    import yaml

    return yaml.safe_load((run_dir / layout.CONFIG).read_text())


# ---- interrupted, resumed --------------------------------------------------------------------------
def test_an_interrupted_cv_says_so_and_resumes_keeping_the_finished_folds(tmp_path, regression_csv):
    cfg = config({"path": str(regression_csv), "target": "price"})
    stop_in_fold_2 = InterruptAfter(epoch=2)
    folds_started = []
    with pytest.raises(KeyboardInterrupt) as stopped:
        cross_validate(cfg, tmp_path / "runs", folds=2, callbacks=[_OnlyInFold(stop_in_fold_2, folds_started)],
                       on_fold=lambda r, f, *_: folds_started.append(f))
    cv_dir = next((tmp_path / "runs").iterdir())
    assert read_record(cv_dir).status == "interrupted" and getattr(stopped.value, "run_dir", cv_dir) == cv_dir
    first = member_dir(cv_dir, 1, 1, 1)
    assert read_record(first).status == "completed"
    before = (first / layout.METRICS).read_text()
    result = resume_cv(cv_dir)
    assert read_record(cv_dir).status == "completed" and (first / layout.METRICS).read_text() == before
    assert [f.fold for f in result.folds] == [1, 2] and read_record(member_dir(cv_dir, 1, 2, 1)).resumed


def test_fold_models_start_from_their_own_seeds_on_the_directorys_rows(tmp_path):
    cfg = config({"dataset": "synthetic", "synthetic": {"n_samples": 80}}, train={"epochs": 1}, seed=3)
    result = cross_validate(cfg, tmp_path / "runs", folds=2)
    seeds = [read_record(fold.run_dir).seed for fold in result.folds]
    assert len(set(seeds)) == 2 and 3 not in seeds
    plain = load_dataset(cfg.data, 3)
    for fold in result.folds:  # the synthetic rows are generated, and split, from the directory's seed
        member = load_dataset(validate_config(_config_of(fold.run_dir)).data, read_record(fold.run_dir).seed)
        assert member.frame.equals(plain.frame) and ((member.split == "test") == (plain.split == "test")).all()


class _OnlyInFold(Callback):
    """Passes hooks to `inner` during fold 2 only."""

    def __init__(self, inner, folds_started):
        self.inner, self.folds_started = inner, folds_started

    def on_epoch_end(self, state, row):
        if self.folds_started[-1:] == [2]:
            self.inner.on_epoch_end(state, row)


# ---- the ensemble as one model ----------------------------------------------------------------------
def test_a_classification_ensemble_averages_its_members_probabilities_and_reports_as_one_run(tmp_path):
    import torch

    from dlrun.folds.predictor import open_predictor
    from dlrun.run.report import build_report

    make_classification_frame(90).to_csv(tmp_path / "pets.csv", index=False)
    cfg = config({"path": str(tmp_path / "pets.csv"), "target": "species"}, train={"epochs": 3, "ensemble": {"folds": 2}})
    result = cross_validate(cfg, tmp_path / "runs")
    predictor = open_predictor(result.cv_dir)
    assert predictor.is_ensemble and len(predictor.members) == 2
    rows = load_dataset(cfg.data, cfg.seed).part("test")
    proba = predictor.outputs(rows)["species"].softmax(dim=1)
    classes = [str(c) for c in predictor.prep.classes("species")]
    expected = torch.zeros_like(proba, dtype=torch.float64)
    for member in predictor.members:
        out = open_predictor(member.run_dir).outputs(rows)["species"].double().softmax(dim=1)
        for k, name in enumerate(member.prep.classes("species")):
            expected[:, classes.index(str(name))] += out[:, k] / 2
    assert proba.double().numpy() == pytest.approx(expected.numpy(), abs=1e-6)
    assert json.loads((result.cv_dir / layout.METRICS).read_text())["test"] == result.ensemble_metrics
    report = build_report(result.cv_dir)
    page = report.path.read_text()
    assert "learning_curves.png" in page and "confusion_species.png" in page
    # serve opens the ensemble as one model; export names what it cannot write yet
    from dlrun.export.run_export import export_run
    from dlrun.inference.batch import predict_rows
    from dlrun.serve.app import create_app

    assert create_app(result.cv_dir).title.endswith(result.cv_dir.name)
    served, _ = predict_rows(predictor, rows[predictor.prep.features])
    assert served[[f"species_proba_{c}" for c in classes]].to_numpy() == pytest.approx(proba.double().numpy(), abs=1e-6)
    with pytest.raises(ConfigError, match="ensemble of 2 fold models"):
        export_run(result.cv_dir)
    from dlrun.core.errors import RunError
    from dlrun.probe.explain import explain_dropout

    with pytest.raises(RunError, match="explain one of them"):
        explain_dropout(result.cv_dir, output=tmp_path / "d.png")


# ---- sweeps scored on folds -------------------------------------------------------------------------
def test_a_sweep_with_cv_folds_scores_each_trial_by_the_mean_over_folds_and_only_the_pick_on_test(tmp_path, regression_csv):
    from dlrun.sweeps.driver import sweep

    cfg = config({"path": str(regression_csv), "target": "price"}, name="houses", train={"epochs": 3},
                 search={"space": {"optimizer.lr": {"choice": [0.003, 0.03]}}, "sampler": "grid", "cv_folds": 2,
                         "objective": "val_rmse"})
    summary = sweep(cfg, tmp_path / "runs")
    trials = summary.trials.set_index("trial")
    assert len(trials) == 2
    for number, row in trials.iterrows():
        trial_dir = tmp_path / "runs" / "sweeps" / "houses" / row["run_dir"]
        plan = read_record(trial_dir).cv
        assert plan.folds == 2 and plan.ensemble and not plan.score_test
        fold_values = []
        for member in plan.members:
            history = pd.read_csv(trial_dir / member / layout.HISTORY)
            best = read_record(trial_dir / member).best_epoch
            fold_values.append(history.loc[history["epoch"] == best, "val_rmse"].iloc[0])
            assert "test" not in json.loads((trial_dir / member / layout.METRICS).read_text())
        assert row["objective"] == pytest.approx(np.mean(fold_values))
        # the pick (the fold models as one predictor) is scored on test once, by the sweep; the other never
        assert (trial_dir / layout.EVALUATION).is_file() == (number == summary.best["trial"])
    assert summary.best["test"]["price"]["rmse"] > 0


# ---- the real CLI ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_cv_and_an_ensemble_through_the_cli(tmp_path, make_config):
    make_classification_frame(120).to_csv(tmp_path / "pets.csv", index=False)
    make_regression_frame(90).to_csv(tmp_path / "houses.csv", index=False)
    pets = make_config({"path": str(tmp_path / "pets.csv"), "target": "species"}, name="pets")
    houses = make_config({"path": str(tmp_path / "houses.csv"), "target": "price"}, name="houses",
                         train={"epochs": 5, "ensemble": {"folds": 3}})
    done = run_cli_many({
        "cv": (["cv", pets, "--folds", "2", "--repeats", "2", "--runs-dir", tmp_path / "cv"], None),
        "ensemble": (["train", houses, "--runs-dir", tmp_path / "ens"], None),
        "bad": (["cv", pets, "--folds", "1", "--runs-dir", tmp_path / "bad"], None),
    })
    assert done["bad"].returncode == 2 and done["bad"].stderr.startswith("Error: --folds must be between 2")
    for key in ("cv", "ensemble"):
        assert done[key].returncode == 0, done[key].stderr
    cv_dir = Path(done["cv"].stdout.strip().splitlines()[-1])
    summary = json.loads((cv_dir / layout.CV_SUMMARY).read_text())
    assert "val mean ± std" in done["cv"].stderr and (cv_dir / layout.LEARNING_CURVES_PLOT).is_file()
    # every non-test row once per repeat, with its fold; the same test rows as `dlrun train`
    oof = pd.read_csv(cv_dir / layout.OOF_PREDICTIONS)
    from dlrun.config.load import load_config

    plain_test = load_dataset(load_config(pets).data, 0).part("test")  # the rows `dlrun train` scores on
    n_test = len(plain_test)
    assert len(oof) == 2 * (120 - n_test) and oof.groupby("repeat")["row"].apply(lambda r: r.is_unique).all()
    assert set(oof["fold"]) == {1, 2}
    members = summary["runs"]
    assert len(members) == 4
    for member in members:
        tested = pd.read_csv(cv_dir / member["run"] / layout.PREDICTIONS)
        assert tested[["x1", "x2"]].to_numpy() == pytest.approx(plain_test[["x1", "x2"]].to_numpy())
    accuracies = [json.loads((cv_dir / m["run"] / layout.METRICS).read_text())["val"]["species"]["accuracy"] for m in members]
    assert summary["val"]["species"]["accuracy"]["mean"] == pytest.approx(np.mean(accuracies))
    assert summary["val"]["species"]["accuracy"]["std"] == pytest.approx(np.std(accuracies, ddof=1))
    ens_dir = Path(done["ensemble"].stdout.strip().splitlines()[-1])
    metrics = json.loads((ens_dir / layout.METRICS).read_text())
    assert set(metrics) == {"test", "test_fold1", "test_fold2", "test_fold3"}
    new_rows = tmp_path / "new.csv"
    make_regression_frame(90).drop(columns="price").head(5).to_csv(new_rows, index=False)
    members = read_record(ens_dir).cv.members
    used = run_cli_many({"eval": (["eval", ens_dir], None),
                         "predict": (["predict", ens_dir, new_rows, "--output", tmp_path / "pred.csv"], None),
                         "val": (["eval", ens_dir, "--split", "val"], None),
                         "cv dir": (["eval", cv_dir], None),
                         **{m: (["predict", ens_dir / m, new_rows, "--output", tmp_path / f"{Path(m).name}.csv"], None)
                            for m in members}})
    # a cv without --ensemble is not one model
    assert used["cv dir"].returncode == 2 and "is a cross-validation directory, not one model" in used["cv dir"].stderr
    assert used["eval"].returncode == 0, used["eval"].stderr
    assert json.loads((ens_dir / layout.EVALUATION).read_text())["metrics"]["price"] == pytest.approx(metrics["test"]["price"])
    assert used["val"].returncode == 2 and "only --split test" in used["val"].stderr
    assert used["predict"].returncode == 0, used["predict"].stderr
    # the ensemble's prediction is the mean of its members' (standard target scaling: the mean in real units too)
    assert all(used[m].returncode == 0 for m in members)
    mean = np.mean([pd.read_csv(tmp_path / f"{Path(m).name}.csv")["price_pred"] for m in members], axis=0)
    assert pd.read_csv(tmp_path / "pred.csv")["price_pred"].to_numpy() == pytest.approx(mean, rel=1e-4)

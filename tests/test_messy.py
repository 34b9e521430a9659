"""A messy export end to end (data/make_messy.py): the default run scores like the hand-cleaned table, every column
decision is visible (check, run.json, report.html, train's warnings), and predict tells the truth about new rows."""

from __future__ import annotations

import importlib.util
import json

import pandas as pd
import pytest

from dlrun.config.load import validate_config
from dlrun.core.errors import DataError
from dlrun.inference.batch import evaluate, predict
from dlrun.run.runner import train

from conftest import REPO, merge, run_cli_many, write_config

spec = importlib.util.spec_from_file_location("make_messy", REPO / "data" / "make_messy.py")
make_messy = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_messy)

# Small and quick, yet the same model on both tables: early stopping watches val_loss on 450 validation rows.
SETTINGS = {"seed": 0, "device": "cpu", "report": False, "model": {"hidden": [32, 16], "dropout": 0.1},
            "optimizer": {"lr": 0.003}, "train": {"epochs": 60, "early_stopping": {"patience": 10}}}


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    folder = tmp_path_factory.mktemp("messy")
    messy, clean = make_messy.make_customers(n_rows=3000)
    messy.to_csv(folder / "messy.csv", index=False)
    clean.to_csv(folder / "clean.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def runs(tables):
    """The default run on the messy table and on the hand-cleaned one, with the same settings."""
    def run(name: str, **data):
        cfg = validate_config(merge(SETTINGS, {"name": name, "data": {"path": str(tables / f"{name}.csv"),
                                                                      "target": "churn_status", **data}}))
        return train(cfg, tables / "runs")

    return {"messy": run("messy"), "clean": run("clean"), "apart": run("messy", merge_case=False)}


def test_default_run_on_the_messy_table_scores_within_2_points_of_the_hand_cleaned_one(runs):
    messy = runs["messy"].metrics["test"]["churn_status"]["accuracy"]
    clean = runs["clean"].metrics["test"]["churn_status"]["accuracy"]
    assert abs(messy - clean) <= 0.02, (messy, clean)
    assert messy > 0.7


def test_messy_target_has_two_classes_in_their_most_frequent_spelling(runs):
    info = json.loads((runs["messy"].run_dir / "run.json").read_text())
    assert set(info["data"]["targets"]["churn_status"]["class_counts"]) == {"Churned", "Stayed"}
    columns = {row["name"]: row for row in info["data"]["columns"]}
    assert columns["churn_status"]["merged"] == {"Churned": ["CHURNED", "churned"], "Stayed": ["STAYED", "stayed"]}
    roles = {name: row["role"] for name, row in columns.items()}
    assert roles == {"row_id": "ignore", "email": "ignore", "age": "numeric", "signup": "date", "is_active": "boolean",
                     "city": "category", "plan": "category", "income": "numeric", "monthly_spend": "numeric",
                     "note": "ignore", "churn_status": "category"}
    assert columns["monthly_spend"]["encoded_width"] == 2  # the value and its missing indicator
    assert set(columns["age"]["missing_tokens"]) == {"unknown", "?", "n/a"}


def test_merge_case_false_keeps_the_target_spellings_apart(runs):
    info = json.loads((runs["apart"].run_dir / "run.json").read_text())
    assert len(info["data"]["targets"]["churn_status"]["class_counts"]) == 6


def test_predict_writes_input_columns_as_given_and_counts_unfamiliar_values(runs, tmp_path):
    rows = pd.DataFrame({
        "row_id": ["1", "2", "3", "4"], "email": ["a@x", "b@x", "c@x", "d@x"],
        "age": ["unknown", "200", "41", "35"], "signup": ["2022-01-01", "15/03/2021", "3 Feb 2020", "2021-06-30"],
        "is_active": ["Y", "", "no", "TRUE"], "city": ["Marseille", " paris", "LYON", "Nice"],
        "plan": ["basic", "premium", "standard", "basic"], "income": ["$50,000", "$61,500", "$38,000", "$45,000"],
        "monthly_spend": ["12.5", "", "80", "40.25"], "note": ["-", "-", "-", "-"],
    })
    path = tmp_path / "new.csv"
    rows.to_csv(path, index=False)
    result = predict(runs["messy"].run_dir, path, tmp_path / "out.csv")
    written = pd.read_csv(result.output, dtype=str, keep_default_na=False)
    assert list(written.columns[:10]) == list(rows.columns) and written.columns[10] == "churn_status_pred"
    assert written[list(rows.columns)].equals(rows)  # the user's own text, not 2022.0 or 50000
    assert set(written["churn_status_pred"]) <= {"Churned", "Stayed"}
    found = result.rows_check.to_dict()
    assert found["age"] == {"tokens read as missing": 1, "outside the training range": 1}
    assert found["city"] == {"unseen categories": 1}  # Marseille; ' paris' and 'LYON' are known spellings
    assert found["is_active"] == {"missing values": 1} and found["monthly_spend"] == {"missing values": 1}
    with pytest.raises(DataError, match=r"--strict.*'age'.*rows 1.*rows 2.*'city'.*'Marseille'.*rows 1"):
        predict(runs["messy"].run_dir, path, tmp_path / "strict.csv", strict=True)
    assert not (tmp_path / "strict.csv").exists()


def test_eval_data_reads_messy_labels_and_strict_names_rows(runs, tables, tmp_path):
    messy, _ = make_messy.make_customers(n_rows=60, seed=99)
    path = tmp_path / "labelled.csv"
    messy.to_csv(path, index=False)
    result = evaluate(runs["messy"].run_dir, data=path, output=tmp_path / "eval.json")
    assert result.n_rows == 60 and 0 <= result.metrics["churn_status"]["accuracy"] <= 1
    assert "age" in result.rows_check.to_dict()  # the generator writes `unknown` ages
    with pytest.raises(DataError, match="--strict"):
        evaluate(runs["messy"].run_dir, data=path, output=tmp_path / "eval2.json", strict=True)


def test_cli_shows_the_column_table_warnings_and_strict_exit(runs, tables, tmp_path):
    config = write_config(tmp_path / "messy.yaml", {"path": str(tables / "messy.csv"), "target": "churn_status",
                                                    "columns": {"plan": {"ordinal": ["basic", "standard", "premium"]}}},
                          report=True, train={"epochs": 8})
    new, _ = make_messy.make_customers(n_rows=5, seed=7)
    new.loc[0, "city"] = "Marseille"
    new.drop(columns=["churn_status"]).to_csv(tmp_path / "new.csv", index=False)
    results = run_cli_many({
        "check": (["check", config, "--steps", "50"], tmp_path),
        "train": (["train", config, "--runs-dir", tmp_path / "runs"], tmp_path),
        "predict_strict": (["predict", runs["messy"].run_dir, tmp_path / "new.csv", "--output", tmp_path / "p.csv",
                            "--strict"], tmp_path),
        "predict": (["predict", runs["messy"].run_dir, tmp_path / "new.csv", "--output", tmp_path / "q.csv"], tmp_path),
    })
    check = results["check"].stderr
    assert "columns" in check and "row counter" in check and "ordinal" in check and "declared" in check
    assert "warning: column 'age'" in check
    train_err = results["train"].stderr
    assert results["train"].returncode == 0, train_err
    assert train_err.index("warning: column 'row_id'") < train_err.index("epochs; best epoch")
    report = (tmp_path / results["train"].stdout.strip().splitlines()[-1] / "report.html").read_text()  # absolute
    assert 'id="columns"' in report and "row counter" in report
    assert results["predict_strict"].returncode == 2 and "'city'" in results["predict_strict"].stderr
    assert "Marseille" in results["predict_strict"].stderr and not (tmp_path / "p.csv").exists()
    assert results["predict"].returncode == 0 and "1 unseen categories ('Marseille')" in results["predict"].stderr


def test_shipped_example_is_what_the_generator_writes(tmp_path):
    make_messy.main(tmp_path)
    assert (tmp_path / "customers_messy.csv").read_bytes() == (REPO / "data" / "customers_messy.csv").read_bytes()
    assert (tmp_path / "customers_new.csv").read_bytes() == (REPO / "data" / "customers_new.csv").read_bytes()

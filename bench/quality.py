"""Are dlrun's defaults good on real tables nobody tuned them for? dlrun against scikit-learn on the same split.

    python bench/quality.py [--seeds N] [--quick] [--tables a,b,...] [--models dlrun,MLP,HGB] [--set key.path=value ...]
                            [--json PATH]

For every table and seed, three models are scored on the test rows of dlrun's own split (`dlrun.data.load_dataset`
with that seed, so every model sees exactly the same train / val / test rows):

  dlrun   `dlrun.runner.train` with a config that holds only `data` keys: every model, optimizer and train setting
          is dlrun's default (`--set` overrides some, to try alternatives). It fits on train and early-stops on val.
  MLP     scikit-learn MLPClassifier / MLPRegressor(hidden_layer_sizes=(64, 32, 16), early_stopping=True), otherwise
          scikit-learn's defaults; a regression target is standardised for it (TransformedTargetRegressor).
  HGB     HistGradientBoostingClassifier / Regressor with scikit-learn's defaults.

The scikit-learn models get one preprocessing pipeline fitted on the train rows (numeric: median imputation and
standard scaling; text: an explicit `missing` category and one-hot, unseen categories ignored) and fit on the train
rows only; they hold out their own early-stopping rows from those, as the val rows are dlrun's.
Every score is computed here with the same scikit-learn metric functions, from each model's test predictions in
original units and class names: accuracy and macro F1 for classification, MAE, RMSE and R^2 for regression.

The tables (see bench/data/README.md): the three built-ins; iris, wine, breast cancer and diabetes as bundled in the
scikit-learn wheel; and five small carData tables with text columns and real missing values, shipped as CSV here.
Everything runs offline on CPU, one thread per model: the full run (5 seeds) takes about a minute and a half, --quick
about fifteen seconds. `--set` tries other dlrun settings on every table, e.g. `--set model.dropout=0 --models dlrun`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
import yaml
from rich.console import Console
from rich.table import Table as RichTable
from sklearn import datasets as skdatasets
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, r2_score, root_mean_squared_error
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from dlrun.config.schema import validate_config
from dlrun.data.load import load_dataset
from dlrun.run.runner import train

BENCH_DATA = Path(__file__).resolve().parent / "data"
MODELS = ("dlrun", "MLP", "HGB")
# The metric each task is judged on first (higher is better), then the others shown beside it.
METRICS = {"classification": ("accuracy", "f1_macro"), "regression": ("r2", "mae", "rmse")}
HIGHER_IS_BETTER = {"accuracy", "f1_macro", "r2"}


@dataclass(frozen=True)
class Table:
    name: str
    source: str
    data: Callable[[Path], dict[str, Any]]  # scratch dir -> the config's `data` section
    quick: bool = True  # part of the --quick subset


def sklearn_table(loader: Callable, target: str, class_names: bool) -> Callable[[Path], dict[str, Any]]:
    """A scikit-learn bundled table written once to a scratch CSV, so dlrun reads it through `data.path` like any CSV."""

    def data(scratch: Path) -> dict[str, Any]:
        bunch = loader(as_frame=True, **({"scaled": False} if loader is skdatasets.load_diabetes else {}))
        frame = bunch.frame.rename(columns={"target": target})
        if class_names:  # class names, not 0/1/2 codes, as a user's CSV would hold them
            frame[target] = np.asarray(bunch.target_names)[bunch.target.to_numpy()]
        path = scratch / f"{loader.__name__.removeprefix('load_')}.csv"
        frame.to_csv(path, index=False)
        return {"path": str(path), "target": target}

    return data


def csv_table(file: str, target: str) -> Callable[[Path], dict[str, Any]]:
    return lambda scratch: {"path": str(BENCH_DATA / file), "target": target}


TABLES = [
    Table("animals", "built-in (UCI Zoo)", lambda scratch: {"dataset": "animals"}),
    Table("salary", "built-in (carData SLID)", lambda scratch: {"dataset": "salary"}, quick=False),
    Table("synthetic", "built-in (generated)", lambda scratch: {"dataset": "synthetic"}),
    Table("iris", "scikit-learn", sklearn_table(skdatasets.load_iris, "species", True)),
    Table("wine", "scikit-learn", sklearn_table(skdatasets.load_wine, "cultivar", True)),
    Table("breast_cancer", "scikit-learn", sklearn_table(skdatasets.load_breast_cancer, "diagnosis", True)),
    Table("diabetes", "scikit-learn", sklearn_table(skdatasets.load_diabetes, "progression", False)),
    Table("titanic", "carData TitanicSurvival", csv_table("titanic.csv", "survived")),
    Table("mroz", "carData Mroz", csv_table("mroz.csv", "lfp")),
    Table("chile", "carData Chile", csv_table("chile.csv", "vote"), quick=False),
    Table("prof_salaries", "carData Salaries", csv_table("professor_salaries.csv", "salary")),
    Table("prestige", "carData Prestige", csv_table("prestige.csv", "prestige")),
]


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`model.dropout=0` -> {"model": {"dropout": 0}}; values parse as YAML, as `dlrun train --set` does."""
    tree: dict[str, Any] = {}
    for pair in pairs:
        key_path, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"Error: --set expects key.path=value, got {pair!r}")
        *parents, leaf = key_path.strip().split(".")
        node = tree
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = yaml.safe_load(value)
    return tree


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


def score(task: str, true: pd.Series, pred: np.ndarray) -> dict[str, float]:
    if task == "classification":
        true, pred = true.astype(str).to_numpy(), np.asarray(pred).astype(str)
        return {"accuracy": accuracy_score(true, pred), "f1_macro": f1_score(true, pred, average="macro")}
    true = true.astype(float).to_numpy()
    pred = np.asarray(pred, dtype=float)
    return {"r2": r2_score(true, pred), "mae": mean_absolute_error(true, pred), "rmse": root_mean_squared_error(true, pred)}


def preprocessor(frame: pd.DataFrame, features: list[str]) -> ColumnTransformer:
    """The textbook scikit-learn tabular pipeline, mirroring what dlrun does by default."""
    numeric = [c for c in features if pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])]
    text = [c for c in features if c not in numeric]
    return ColumnTransformer([
        ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
        ("text", make_pipeline(SimpleImputer(strategy="constant", fill_value="missing"),
                               OneHotEncoder(handle_unknown="ignore", sparse_output=False)), text),
    ])


def as_sklearn_input(frame: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """Text columns as object with np.nan for gaps: pandas 3's `str` dtype and pd.NA trip SimpleImputer."""
    X = frame[features].copy()
    for column in features:
        if pd.api.types.is_bool_dtype(X[column]):
            X[column] = X[column].astype(float)
        elif not pd.api.types.is_numeric_dtype(X[column]):
            X[column] = X[column].astype(object).where(X[column].notna(), np.nan)
    return X


def sklearn_models(task: str, frame: pd.DataFrame, features: list[str], seed: int) -> dict[str, Any]:
    if task == "classification":
        mlp = MLPClassifier(hidden_layer_sizes=(64, 32, 16), early_stopping=True, random_state=seed)
        return {"MLP": Pipeline([("prep", preprocessor(frame, features)), ("mlp", mlp)]),
                "HGB": Pipeline([("prep", preprocessor(frame, features)), ("hgb", HistGradientBoostingClassifier(random_state=seed))])}
    mlp = MLPRegressor(hidden_layer_sizes=(64, 32, 16), early_stopping=True, random_state=seed)
    return {"MLP": TransformedTargetRegressor(Pipeline([("prep", preprocessor(frame, features)), ("mlp", mlp)]),
                                              transformer=StandardScaler()),
            "HGB": Pipeline([("prep", preprocessor(frame, features)), ("hgb", HistGradientBoostingRegressor(random_state=seed))])}


def run_table(table: Table, seed: int, overrides: dict[str, Any], scratch: Path, models: tuple[str, ...]) -> dict:
    """{target: {model: {metric: value}}} on this seed's test rows, plus the split sizes and seconds per model."""
    raw = merge({"name": table.name, "seed": seed, "device": "cpu", "data": table.data(scratch)}, overrides)
    cfg = validate_config(raw, source=table.name)
    dataset = load_dataset(cfg.data, cfg.seed)
    train_rows, test_rows = dataset.part("train"), dataset.part("test")
    scores: dict[str, dict[str, dict[str, float]]] = {t: {} for t in dataset.targets}
    seconds: dict[str, float] = {}

    if "dlrun" in models:
        started = time.perf_counter()
        run = train(cfg, runs_dir=scratch / "runs")
        seconds["dlrun"] = time.perf_counter() - started
        predictions = pd.read_csv(run.run_dir / "predictions.csv")
        # predictions.csv holds the test rows in split order: the same rows as test_rows.
        for target, task in dataset.tasks.items():
            scores[target]["dlrun"] = score(task, test_rows[target].reset_index(drop=True), predictions[f"{target}_pred"].to_numpy())

    X_train = as_sklearn_input(train_rows, dataset.features)
    X_test = as_sklearn_input(test_rows, dataset.features)
    for target, task in dataset.tasks.items():
        y_train = train_rows[target].astype(str) if task == "classification" else train_rows[target].astype(float)
        for name, model in sklearn_models(task, X_train, dataset.features, seed).items():
            if name not in models:
                continue
            started = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ConvergenceWarning at scikit-learn's default max_iter
                model.fit(X_train, y_train)
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started
            scores[target][name] = score(task, test_rows[target], model.predict(X_test))

    sizes = {name: int((dataset.split == name).sum()) for name in ("train", "val", "test")}
    return {"scores": scores, "tasks": dataset.tasks, "rows": sizes, "seconds": seconds,
            "epochs": {"best": run.best_epoch, "run": run.epochs_run} if "dlrun" in models else {}}


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(results: dict[str, list[dict]], models: tuple[str, ...]) -> list[dict]:
    """One row per (table, target, metric): mean and sd over seeds for each model."""
    sources = {table.name: table.source for table in TABLES}
    rows = []
    for table, per_seed in results.items():
        first = per_seed[0]
        for target, task in first["tasks"].items():
            for metric in METRICS[task]:
                row = {"table": table, "source": sources[table], "target": target, "task": task, "metric": metric,
                       "rows": first["rows"]}
                for model in models:
                    row[model] = mean_sd([r["scores"][target][model][metric] for r in per_seed])
                rows.append(row)
    return rows


def fmt(value: float, metric: str) -> str:
    if metric in HIGHER_IS_BETTER:
        return f"{value:.3f}"
    # Errors are in the target's own units (dollars, score points): whole numbers once they are large.
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def render(rows: list[dict], models: tuple[str, ...], n_seeds: int, title: str, console: Console) -> None:
    table = RichTable(title=title, title_justify="left")
    for header in ("table", "target", "train/val/test", "metric", *models):
        table.add_column(header, justify="left" if header in ("table", "target", "metric") else "right", no_wrap=True)
    if {"dlrun", "MLP"} <= set(models):
        table.add_column("dlrun - MLP", justify="right")
    previous = None
    for row in rows:
        key = (row["table"], row["target"])
        first = key != previous
        if first and previous is not None:
            table.add_section()
        previous = key
        best = max if row["metric"] in HIGHER_IS_BETTER else min
        winner = best(models, key=lambda m: row[m][0])
        cells = []
        for model in models:
            mean, sd = row[model]
            text = fmt(mean, row["metric"]) + (f" ±{fmt(sd, row['metric'])}" if n_seeds > 1 else "")
            cells.append(f"[bold]{text}[/bold]" if model == winner else text)
        extra = []
        if {"dlrun", "MLP"} <= set(models):
            gap = row["dlrun"][0] - row["MLP"][0]
            better = gap >= 0 if row["metric"] in HIGHER_IS_BETTER else gap <= 0
            extra = [f"[{'green' if better else 'red'}]{'+' if gap >= 0 else '-'}{fmt(abs(gap), row['metric'])}[/]"]
        size = "/".join(str(row["rows"][s]) for s in ("train", "val", "test"))
        label = f"{row['table']}\n[dim]{row['source']}[/dim]" if first else ""
        table.add_row(label, row["target"] if first else "", size if first else "", row["metric"], *cells, *extra)
    console.print(table)


def headline(rows: list[dict], console: Console) -> None:
    """Wins on each target's first metric, and the mean gap to each baseline on it (accuracy or R^2)."""
    primary = [r for r in rows if r["metric"] == METRICS[r["task"]][0]]
    for baseline in ("MLP", "HGB"):
        if baseline not in primary[0]:
            continue
        gaps = [r["dlrun"][0] - r[baseline][0] for r in primary]
        wins = sum(g > 0.005 for g in gaps)
        losses = sum(g < -0.005 for g in gaps)
        console.print(f"dlrun vs {baseline} on accuracy / R^2: {wins} better, {len(gaps) - wins - losses} within 0.005, "
                      f"{losses} worse; mean gap {statistics.fmean(gaps):+.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds per table, each its own split (default 5)")
    parser.add_argument("--quick", action="store_true", help="one seed, and all tables but the two largest (salary, chile)")
    parser.add_argument("--tables", help=f"comma-separated subset of: {', '.join(t.name for t in TABLES)}")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a dlrun config key for every table, e.g. --set model.dropout=0 (repeatable)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of dlrun,MLP,HGB")
    parser.add_argument("--json", type=Path, help="also write every per-seed score to this JSON file")
    args = parser.parse_args()

    torch.set_num_threads(1)  # small models: one thread is fastest, and leaves the other core to other work
    n_seeds = 1 if args.quick else args.seeds
    tables = [t for t in TABLES if t.quick] if args.quick else TABLES
    if args.tables:
        wanted = args.tables.split(",")
        unknown = sorted(set(wanted) - {t.name for t in TABLES})
        if unknown:
            raise SystemExit(f"Error: unknown table(s) {unknown}; known: {', '.join(t.name for t in TABLES)}")
        tables = [t for t in TABLES if t.name in wanted]
    if args.seeds < 1:
        raise SystemExit(f"Error: --seeds must be at least 1, got {args.seeds}")
    unknown = sorted(set(args.models.split(",")) - set(MODELS))
    if unknown:
        raise SystemExit(f"Error: unknown model(s) {unknown}; known: {', '.join(MODELS)}")
    models = tuple(m for m in MODELS if m in args.models.split(","))
    overrides = parse_overrides(args.overrides)
    console = Console(width=max(Console().width, 140))  # the table is wide; a pipe or CI log would get 80 columns
    progress = Console(stderr=True)  # per-seed timings on stderr, so stdout is the table alone

    results: dict[str, list[dict]] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dlrun-quality-") as scratch, threadpool_limits(1):
        for table in tables:
            results[table.name] = []
            for seed in range(n_seeds):
                result = run_table(table, seed, overrides, Path(scratch), models)
                results[table.name].append(result)
                timing = ", ".join(f"{m} {s:.1f}s" for m, s in result["seconds"].items())
                progress.print(f"[dim]{table.name} seed {seed}: {timing}[/dim]", highlight=False)

    rows = summarise(results, models)
    settings = " ".join(args.overrides) or "dlrun defaults (only data keys in the config)"
    render(rows, models, n_seeds, f"Test scores, mean ± sd over {n_seeds} seed(s); {settings}", console)
    if "dlrun" in models:
        headline(rows, console)
    console.print(f"[dim]{time.perf_counter() - started:.0f}s in all[/dim]")
    if args.json:
        args.json.write_text(json.dumps({"overrides": args.overrides, "results": results}, indent=1))


if __name__ == "__main__":
    main()

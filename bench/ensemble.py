"""Does a bagged ensemble of fold models beat one model, and what does it cost?

    nice -n 19 python bench/ensemble.py [--folds 5] [--seeds 1] [--tables animals,titanic] [--json PATH]
                                        [--summarise PATH]

For every table (the shipped configs/*.yaml, sweeps left out, and a few bench/tables.py tables written to scratch
CSVs) and seed, the same config is trained twice, with report off:
  single    `dlrun train`: one model, trained on the train split, early-stopped on val.
  ensemble  train.ensemble {folds: K}: K fold models over the train + val rows, averaged as one predictor.
Both are scored on the same test rows (the split's test rows do not depend on the folds). Printed per table: the
headline test metric (accuracy, or R^2 for regression) of the single model, of the ensemble, the mean of the
ensemble's members, and the wall seconds of each. Every result goes to --json as it is measured.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

BENCH_TABLES = ("iris", "breast_cancer", "titanic", "mroz", "diabetes")


def configs(scratch: Path, names: set[str] | None) -> dict[str, dict[str, Any]]:
    """{table: raw config}: the shipped configs, then bench tables with dlrun's defaults (only `data` keys)."""
    from tables import TABLES

    found = {}
    for path in sorted((REPO / "configs").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        if "search" in raw:
            continue
        if raw["data"].get("path"):
            raw["data"]["path"] = str(REPO / raw["data"]["path"])
        found[raw["name"]] = raw
    for table in TABLES:
        if table.name in BENCH_TABLES and table.name not in found:
            found[table.name] = {"name": table.name, "data": table.write(scratch)}
    return {name: raw for name, raw in found.items() if names is None or name in names}


def headline(metrics: dict[str, dict[str, float]]) -> tuple[str, float]:
    target, values = next(iter(metrics.items()))
    name = "accuracy" if "accuracy" in values else "r2"
    return name, values[name]


def measure(name: str, raw: dict[str, Any], seed: int, folds: int, runs_dir: Path) -> dict[str, Any]:
    from dlrun.config.load import validate_config
    from dlrun.folds.cv import cross_validate
    from dlrun.run.runner import train

    raw = {**raw, "seed": seed, "report": False, "device": "cpu"}
    started = time.perf_counter()
    single = train(validate_config(raw), runs_dir)
    single_s = time.perf_counter() - started
    started = time.perf_counter()
    ensemble = cross_validate(validate_config(raw), runs_dir, folds=folds, ensemble=True)
    ensemble_s = time.perf_counter() - started
    metric, single_value = headline(single.metrics["test"])
    target = next(iter(ensemble.ensemble_metrics))
    return {"table": name, "seed": seed, "metric": metric, "single": single_value,
            "ensemble": ensemble.ensemble_metrics[target][metric],
            "members_mean": ensemble.summary["test"][target][metric]["mean"],
            "single_s": round(single_s, 1), "ensemble_s": round(ensemble_s, 1), "folds": folds}


def summarise(results: list[dict[str, Any]], markdown: bool) -> str:
    rows = []
    for table in dict.fromkeys(r["table"] for r in results):
        mine = [r for r in results if r["table"] == table]
        mean = lambda key: statistics.fmean(r[key] for r in mine)  # noqa: E731
        rows.append([table, mine[0]["metric"], f"{mean('single'):.4f}", f"{mean('ensemble'):.4f}",
                     f"{mean('members_mean'):.4f}", f"{mean('ensemble') - mean('single'):+.4f}",
                     f"{mean('single_s'):.0f}", f"{mean('ensemble_s'):.0f}", str(len(mine))])
    header = ["table", "test metric", "single", f"ensemble ({results[0]['folds']} folds)", "members' mean",
              "ensemble - single", "single s", "ensemble s", "seeds"]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)) for line in [header, *rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--tables", default=None, help="comma-separated table names (default: all)")
    parser.add_argument("--json", type=Path, default=None, help="write every result here as it is measured")
    parser.add_argument("--summarise", type=Path, default=None, help="print the table from such a JSON file")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if args.summarise:
        print(summarise(json.loads(args.summarise.read_text()), args.markdown))
        return
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        for name, raw in configs(Path(scratch), set(args.tables.split(",")) if args.tables else None).items():
            for seed in range(args.seeds):
                results.append(measure(name, raw, seed, args.folds, Path(scratch) / "runs"))
                print(json.dumps(results[-1]), flush=True)
                if args.json:
                    args.json.write_text(json.dumps(results, indent=1))
    print(summarise(results, args.markdown))


if __name__ == "__main__":
    main()

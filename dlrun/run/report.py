"""report.html: one self-contained page per run (images inlined as data URIs, no scripts, nothing fetched).

`publish` is what a finished training run calls: plots, diagnostics warnings and the report, and it never raises.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from dlrun.config.yaml_load import load_yaml
from dlrun.run import layout
from dlrun.run.record import RunRecord, read_record
from dlrun.training.diagnostics import diagnose
from dlrun.core.errors import RunError
from dlrun.core.io import read_json, write_text
from dlrun.data.columns import TABLE_HEADER, table_cells
from dlrun.run.listing import RunRow, format_duration, metrics_problem, read_run_row
from dlrun.metrics.names import format_value, metric_label

CAPTIONS = {
    "loss": "Training and validation loss per epoch; dashed grey: learning rate (right axis, drawn when it changes); "
            "dotted green: best epoch; with several targets, each target's own loss and its weight on the right.",
    "val_metrics": "Each validation metric per epoch.",
    "confusion": "Test split: true class per row, predicted class per column; right: each row as fractions.",
    "roc": "Test split: one-vs-rest ROC curve per class with its area under the curve.",
    "regression": "Test split in the target's own units: predictions against the truth, and the residuals.",
    "diagnostics": "Per layer and epoch: gradient norm on a fixed training batch, weight norm, how far the weights "
                   "moved during the epoch relative to their size, dead ReLU units on a fixed validation batch.",
    "learning": "Each fold's training and validation loss per epoch (cross-validation or ensemble); dots: best epochs.",
    "members": "Test split, TabM's k members: left, how much they disagree on each row (standard deviation over "
               "members); right, each member's own test score against the ensemble's (the mean of the members).",
    "dropout": "From `dlrun explain dropout`: validation rows through the model with dropout on (dots) and off (bars).",
}
STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1180px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; } caption { text-align: left; font-weight: bold; padding: .3em 0; }
th, td { border: 1px solid #ccc; padding: .25em .7em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } th { background: #f3f3f3; }
.warning { color: #8a4b00; } .ok { color: #2b6e2b; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: .9em; } pre { background: #f7f7f7; padding: 1em; overflow-x: auto; }
"""


@dataclass(frozen=True)
class Report:
    path: Path
    plots: list[Path]
    warnings: list[str]  # diagnostics warnings, then plots that could not be drawn


def build_report(run_dir: Path | str) -> Report:
    """Draw the run's plots into plots/ and write report.html beside them; raises RunError when it is not a run."""
    run_dir = Path(run_dir)
    if not (run_dir / layout.CONFIG).is_file() or not (run_dir / layout.RECORD).is_file():
        raise RunError(f"{run_dir} is not a dlrun run directory ({layout.CONFIG} and {layout.RECORD} are needed)")
    try:
        config_text = (run_dir / layout.CONFIG).read_text()
        config = load_yaml(config_text)
        metrics = read_json(run_dir / layout.METRICS) if (run_dir / layout.METRICS).is_file() else {}
    except (OSError, ValueError, yaml.YAMLError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise RunError(f"{run_dir} has a damaged config.yaml or metrics.json ({exc})") from None
    if not isinstance(config, dict) or not isinstance(metrics, dict):
        raise RunError(f"{run_dir} has a damaged config.yaml or metrics.json (not a mapping)")
    if metrics_problem(metrics):
        raise RunError(f"{run_dir} has a damaged metrics.json: {metrics_problem(metrics)}")
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    tasks = data.get("task") if isinstance(data.get("task"), dict) else {}
    units = data.get("units") if isinstance(data.get("units"), dict) else {}
    record = read_record(run_dir)
    from dlrun.run.plots import write_plots  # matplotlib loads only when something is drawn, not with the runner

    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    weights = train.get("loss_weight") if isinstance(train.get("loss_weight"), dict) else {}
    plots = write_plots(run_dir, tasks, units, record.best_epoch, weights)
    from dlrun.run.member_plots import write_member_plots  # a TabM run's members (members.csv)

    write_member_plots(run_dir, tasks, units, plots)
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    warnings = diagnostics_warnings(run_dir, model.get("activation", "relu")) + plots.problems
    # drawn on request by `dlrun explain dropout`, and by a cv or ensemble directory: shown once they exist
    extra = [run_dir / name for name in (layout.DROPOUT_PLOT, layout.LEARNING_CURVES_PLOT)]
    pictures = plots.paths + [path for path in extra if path.is_file()]
    page = render(run_dir, record, metrics, units, config_text, pictures, warnings)
    write_text(run_dir / layout.REPORT, page)
    return Report(run_dir / layout.REPORT, plots.paths, warnings)


def diagnostics_warnings(run_dir: Path, activation: str) -> list[str]:
    path = Path(run_dir) / layout.DIAGNOSTICS
    if not path.is_file():
        return []
    try:
        return diagnose(pd.read_csv(path), activation)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # a damaged or hand-edited file
        return [f"diagnostics.csv could not be read ({type(exc).__name__}: {exc})"]


def publish(run_dir: Path, activation: str, draw: bool = True) -> list[str]:
    """Plots and report.html for a finished run (with `draw`); returns the warnings for run.json, the diagnostics'
    always. Never raises: a picture that cannot be drawn must not fail a run that trained."""
    try:
        return build_report(run_dir).warnings if draw else diagnostics_warnings(run_dir, activation)
    except Exception as exc:
        return [f"report.html was not written ({type(exc).__name__}: {exc})"]


def render(run_dir: Path, record: RunRecord, metrics: dict[str, Any], units: dict[str, str], config_text: str,
           plots: list[Path], warnings: list[str]) -> str:
    row = read_run_row(run_dir)
    parts = [f"<h1>dlrun run {escape(run_dir.name)}</h1>", _facts(row, record)]
    parts.append("<h2>Warnings</h2>")
    data = record.data or {}
    overfit = record.overfitting or {}
    warnings = [*([str(overfit["message"])] if overfit.get("message") else []), *warnings]
    if warnings:
        parts.append("<ul>" + "".join(f'<li class="warning">{escape(w)}</li>' for w in warnings) + "</ul>")
    elif (run_dir / layout.DIAGNOSTICS).is_file():
        parts.append('<p class="ok">No training problems detected: gradients, weights and ReLU units look healthy.</p>')
    else:
        parts.append("<p>No diagnostics.csv: this run recorded no training diagnostics.</p>")
    parts.append("<h2>Metrics</h2>")
    parts.extend(_metrics_tables(metrics, units) or ["<p>No metrics.json: the run did not finish.</p>"])
    parts.append("<h2>Data</h2>")
    parts.append(_data_table(record.data or {}, units))
    if data.get("warnings"):  # column decisions and split sizes, as `dlrun train` printed them before training
        parts.append("<ul>" + "".join(f'<li class="warning">{escape(str(w))}</li>' for w in data["warnings"]) + "</ul>")
    parts.append(_columns_table(data))
    parts.append("<h2>Plots</h2>")
    parts.extend(_figure(path) for path in plots)
    parts.append("<h2>Configuration (resolved)</h2>")
    parts.append(f"<pre>{escape(config_text)}</pre>")
    parts.append("<h2>Environment</h2>")
    versions = record.versions or {}
    parts.append(_table(["", "value"], [["seed", record.seed], ["device", record.device],
                                        ["git commit", record.git_commit], *[[k, v] for k, v in versions.items()]]))
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>dlrun report: {escape(run_dir.name)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def _facts(row: RunRow, record: RunRecord) -> str:
    facts = [["status", row.status], ["started", record.started], ["ended", record.ended],
             ["duration", format_duration(row.duration_s)], ["epochs", row.epochs],
             ["best epoch", f"{record.best_epoch} by {row.monitor} = {format_value(row.best_val)}" if row.monitor else None],
             ["stopped", record.stop_reason]]
    return _table(["run", ""], [fact for fact in facts if fact[1] is not None])


def _metrics_tables(metrics: dict[str, Any], units: dict[str, str]) -> list[str]:
    """One table per target: a row per metric, a column per split (train, val, test); errors in the target's units."""
    splits = [s for s in ("train", "val", "test") if isinstance(metrics.get(s), dict)]
    targets = list(dict.fromkeys(t for s in splits for t in metrics[s]))
    tables = []
    for target in targets:
        names = list(dict.fromkeys(m for s in splits for m in metrics[s].get(target, {})))
        rows = []
        for name in names:
            rows.append([metric_label(name, target, units), *(_Number(metrics[s].get(target, {}).get(name)) for s in splits)])
        tables.append(_table(["metric", *splits], rows, caption=f"target: {target}", css_id=f"metrics-{target}"))
    return tables


def summary_rows(summary: dict[str, Any], units: dict[str, str], always_missing: bool = False) -> list[tuple[str, str]]:
    """run.json's data summary as (what, value) lines: rows per split, features before and after encoding, imputed
    values, each target's class balance or range. Shared by `dlrun check` and the report."""
    rows = [("rows", ", ".join(f"{name} {n}" for name, n in summary["rows"].items()))]
    if summary.get("rows_dropped_missing_target"):
        rows.append(("rows left out", f"{summary['rows_dropped_missing_target']} (no target value)"))
    if summary.get("rows_added_by_smote"):
        rows.append(("rows added by SMOTE (train)", str(summary["rows_added_by_smote"])))
    rows.append(("features", f"{summary['features_in']} columns -> {summary['features_encoded']} after encoding "
                             f"({len(summary['numeric_features'])} numeric, {len(summary['categorical_features'])} text)"))
    if summary["unused_columns"]:
        rows.append(("not used", ", ".join(summary["unused_columns"])))
    if summary["missing_imputed_in_train"] or always_missing:
        missing = ", ".join(f"{c} {n}" for c, n in summary["missing_imputed_in_train"].items())
        rows.append(("missing (train)", f"{missing} imputed" if missing else "none"))
    for target, info in summary["targets"].items():
        if info["task"] == "classification":
            n_train = sum(info["class_counts"].values())
            balance = ", ".join(f"{name} {n} ({n / n_train:.0%})" for name, n in info["class_counts"].items())
            rows.append((f"{target} classes (train)", balance))
        else:
            unit = f" {units[target]}" if target in units else ""
            rows.append((f"{target} range (train)", f"{format_value(info['min'])} .. {format_value(info['max'])}, "
                                                    f"mean {format_value(info['mean'])}{unit}"))
    return rows


def _data_table(summary: dict[str, Any], units: dict[str, str]) -> str:
    try:
        rows = summary_rows(summary, units, always_missing=True)
    except (KeyError, TypeError, AttributeError):  # a run.json from another version or edited by hand
        return "<p>run.json holds no readable data summary.</p>"
    return _table(["data", "value"], [list(row) for row in rows], css_id="data")


def _columns_table(summary: dict[str, Any]) -> str:
    """One row per column: the role dlrun gave it and why (columns.py)."""
    if not summary.get("columns"):
        return "<p>run.json holds no column table (a run from before dlrun recorded one).</p>"
    try:
        return _table(list(TABLE_HEADER), table_cells(summary["columns"]), caption="columns", css_id="columns")
    except (KeyError, TypeError, AttributeError, ValueError):  # a run.json from another version or edited by hand
        return "<p>run.json holds no readable column table.</p>"


def _figure(path: Path) -> str:
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    kind = path.stem.split("_")[0] if not path.stem.startswith("val_") else "val_metrics"
    caption = CAPTIONS.get(kind, "")
    return (f'<figure><img src="data:image/png;base64,{encoded}" alt="{escape(path.stem)}">'
            f"<figcaption><b>{escape(path.name)}</b>. {escape(caption)}</figcaption></figure>")


class _Number:
    """A table cell holding a metric: right-aligned, with the exact value kept in a data attribute."""

    def __init__(self, value: float | None):
        self.value = value


def _table(header: list[str], rows: list[list[Any]], caption: str | None = None, css_id: str | None = None) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            if isinstance(cell, _Number):
                exact = "" if cell.value is None else f' data-value="{cell.value!r}"'
                cells.append(f'<td class="num"{exact}>{escape(format_value(cell.value))}</td>')
            else:
                cells.append(f"<td>{escape('-' if cell is None else str(cell))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    caption_html = f"<caption>{escape(caption)}</caption>" if caption else ""
    id_html = f' id="{escape(css_id)}"' if css_id else ""
    return f"<table{id_html}>{caption_html}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"

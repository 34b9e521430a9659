"""The command line: parse options, call one library function, render the result.

Heavy libraries (torch, pandas, scikit-learn) are imported inside the commands so `dlrun --help` stays instant.
Every DlrunError becomes `Error: ...` on stderr and exit status 2, here and nowhere else.
"""

from __future__ import annotations


from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from dlrun.core.text import safe_terminal_text as escape  # user text: no rich markup, no raw terminal escapes
from rich.table import Table

from dlrun.cli.app import app
from dlrun.cli.conventions import DlrunTyper
from dlrun.cli.exits import guarded
from dlrun.cli.render import (column_table, metrics_tables, print_row_check, print_sweep, print_trial, print_warning, stderr,
                              summary_table, warn_if_unfinished)
from dlrun.metrics.names import format_value as _fmt

@app.command()
def train(
    config: Optional[Path] = typer.Argument(None, help="YAML config file (omit with --resume)."),
    set_: List[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="Override a key: --set optimizer.lr=0.01 (value parsed as YAML)."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Where run directories are created."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N (overrides the config)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue an interrupted run in its own directory "
                                          "(with --set train.epochs=N: train a finished or interrupted run on to epoch N)."),
    nproc: Optional[int] = typer.Option(None, "--nproc", metavar="N", help="Train on N processes of this machine (data-parallel): "
                                        "starts torchrun --nproc-per-node N -m dlrun train ... (README: Scaling up)."),
) -> None:
    """Train a model; prints the run directory as the last line of stdout. Ctrl-C or SIGTERM stops it after the
    current epoch with last.pt saved (exit 130) and prints the command that resumes it."""
    from dlrun.config.load import load_config
    from dlrun.core.errors import ConfigError
    from dlrun.cli.cv_commands import train_folds_if_asked
    from dlrun.run.torchrun import rank_zero_reports, silence_other_ranks, train_in_processes

    if (config is None) != (resume is None) and train_folds_if_asked(config, set_, runs_dir, device, resume):
        return  # train.ensemble, or a cv directory to resume: its fold runs train as `dlrun cv` trains them
    silence_other_ranks()  # under torchrun, rank 0 alone prints

    def run():
        if (config is None) == (resume is None):
            raise ConfigError("give a CONFIG file to train, or --resume RUN_DIR to continue a run (not both)")
        if resume is not None and device:
            raise ConfigError("--device cannot change a resumed run: it continues with its own config.yaml")
        if resume is not None:
            from dlrun.run.extend import check_resume_overrides

            check_resume_overrides(set_)  # before heavy imports, as a bad CONFIG would be
        cfg = load_config(config, set_, device) if config else None  # before heavy imports: mistakes show at once
        if nproc is not None:  # checked here, trained by the N processes torchrun starts
            return train_in_processes(nproc, config, set_, runs_dir, device, resume)
        from dlrun.training.callbacks import RichProgress
        from dlrun.run.runner import resumable_config, resume as resume_run, train as train_run

        epochs = (cfg or resumable_config(resume)).train.epochs
        with RichProgress(epochs) as progress:
            if cfg is None:
                return resume_run(resume, callbacks=[progress], overrides=set_)
            return train_run(cfg, runs_dir, callbacks=[progress], warn=print_warning)

    result = guarded(lambda: rank_zero_reports(run))
    if nproc is not None:
        raise typer.Exit(result)
    for note in result.notes:
        stderr.print(escape(note), highlight=False)
    for warning in result.warnings:
        print_warning(warning)
    stderr.print(escape(f"{result.epochs_run} epochs; best epoch {result.best_epoch} by {result.monitor}. {result.stop_reason}"))
    for table in metrics_tables(result.metrics, result.cfg.data.units):
        stderr.print(table)
    typer.echo(str(result.run_dir))


@app.command("eval")
def eval_(
    run: Path = typer.Argument(..., help="A run directory, e.g. runs/20260101-120000-salary."),
    data: Optional[Path] = typer.Option(None, "--data", help="Score a labelled CSV instead of the run's own split."),
    split: str = typer.Option("test", "--split", help="train | val | test (ignored with --data)."),
    output: Optional[Path] = typer.Option(None, "--output", help="Where to write eval.json (default: in the run)."),
    device: Optional[str] = typer.Option(None, "--device", help="Device to score on (default: cpu)."),
    strict: bool = typer.Option(False, "--strict", help="With --data: exit 2 naming rows and columns that hold unseen "
                                "categories, words read as missing, missing values or numbers outside the training range."),
) -> None:
    """Score the run's best checkpoint and write eval.json."""
    from dlrun.inference.batch import evaluate

    result = guarded(lambda: evaluate(run, data, split, output, device, strict))
    warn_if_unfinished(run, result.run_status, result.checkpoint_epoch)
    print_row_check(result.rows_check, result.source)
    stderr.print(escape(f"{result.n_rows} rows from the {result.source}"))
    for table in metrics_tables({result.source: result.metrics}, result.units):
        stderr.print(table)
    typer.echo(str(result.output))


@app.command()
def predict(
    run: Path = typer.Argument(..., help="A run directory."),
    input_csv: Path = typer.Argument(..., help="CSV or Parquet (file, directory or glob) with the feature columns (any order; extra columns are kept)."),
    output: Optional[Path] = typer.Option(None, "--output", help="Output CSV (default: <input>_predictions.csv)."),
    device: Optional[str] = typer.Option(None, "--device", help="Device to predict on (default: cpu)."),
    strict: bool = typer.Option(False, "--strict", help="Exit 2 naming rows and columns that hold unseen categories, "
                                "words read as missing, missing values or numbers outside the training range."),
) -> None:
    """Predict new rows in real units and class names; the input columns are written back exactly as given, the
    prediction columns after them. Prints the output path; a summary of unfamiliar values goes to stderr."""
    from dlrun.inference.batch import predict as predict_rows

    result = guarded(lambda: predict_rows(run, input_csv, output, device, strict))
    warn_if_unfinished(run, result.run_status, result.checkpoint_epoch)
    print_row_check(result.rows_check, str(input_csv))
    typer.echo(str(result.output))


@app.command()
def check(
    config: Path = typer.Argument(..., help="YAML config file."),
    set_: List[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="Override a key: --set optimizer.lr=0.01 (value parsed as YAML)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N (overrides the config)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Most full-batch steps (default 2000; stops once overfitted)."),
) -> None:
    """Sanity check before training: validate config and data, print the data summary, then overfit one batch.

    The batch is data.batch_size training rows; the configured model (dropout off) and optimizer train on it alone.
    Exit status 0 when the batch is overfitted (100% accuracy, R² >= 0.99), 1 when it is not (a likely bug: the
    numbers and likely causes are printed), 2 on a bad config or data. No run directory is created.
    """
    from dlrun.config.load import load_config

    def run():
        cfg = load_config(config, set_, device)  # before the heavy imports: a config mistake is reported at once
        from dlrun.probe.check import check as check_config

        return check_config(cfg) if steps is None else check_config(cfg, steps)

    report = guarded(run)
    stderr.print(summary_table(report.summary, report.cfg.data.units))
    stderr.print(column_table(report.summary.get("columns", [])))
    for line in report.summary.get("warnings", []):
        print_warning(line)
    opt = report.cfg.optimizer
    stderr.print(f"one batch of {report.n_rows} training rows, {report.steps} of at most {report.max_steps} full-batch "
                 f"steps, {opt.name} lr {opt.lr:g}; {escape('; '.join(report.notes))}", highlight=False, soft_wrap=True)
    table = Table("target", "metric", "on the batch", "needed", title="overfitting one batch")
    for t in report.targets:
        as_text = (lambda v: f"{v:.2%}") if t.metric == "accuracy" else _fmt
        table.add_row(escape(t.target), t.metric, as_text(t.value), f">= {as_text(t.needed)}")
    stderr.print(table)
    near_zero = "near zero" if report.loss_near_zero else "not near zero"
    stderr.print(f"loss {report.loss_start:.4f} -> {report.loss_end:.4f} ({near_zero})", highlight=False)
    label = "[bold green]PASS[/]" if report.passed else "[bold red]FAIL[/]"
    stderr.print(f"{label} {escape(report.verdict)}", highlight=False, soft_wrap=True)
    for line in report.advice:
        stderr.print(f"  - {escape(line)}", highlight=False, soft_wrap=True)
    raise typer.Exit(0 if report.passed else 1)


@app.command()
def config(
    markdown: bool = typer.Option(False, "--markdown", help="Print a Markdown table (as in README.md)."),
) -> None:
    """Print every config key with its default, meaning and, for an enumerated key, its allowed values."""
    from dlrun.config.walk import enumerated
    from dlrun.config.schema import Config, describe_schema

    allowed = enumerated(Config)
    rows = [(key, default, f"{meaning} Allowed: {', '.join(map(str, allowed[key]))}." if key in allowed else meaning)
            for key, default, meaning in describe_schema()]
    if markdown:
        lines = ["| key | default | meaning |", "| --- | --- | --- |"]
        for key, default, description in rows:
            pipe_safe = description.replace("|", r"\|")  # a bare | would end the Markdown cell
            lines.append(f"| `{key}` | `{default}` | {pipe_safe} |")
        typer.echo("\n".join(lines))
        return
    table = Table("key", "default", "meaning", title="dlrun config reference")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


@app.command()
def report(run: Path = typer.Argument(..., help="A run directory.")) -> None:
    """(Re)draw the run's plots and write report.html (self-contained: open it in any browser); prints its path."""
    from dlrun.run.report import build_report

    result = guarded(lambda: build_report(run))
    for warning in result.warnings:
        stderr.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    typer.echo(str(result.path))


@app.command()
def runs(
    runs_dir: Path = typer.Argument(Path("runs"), help="Folder holding run directories."),
    sort: Optional[str] = typer.Option(None, "--sort", help="Best first by a metric: test_accuracy, val_rmse, val_loss (the monitored one), epochs, duration_s."),
    name: Optional[str] = typer.Option(None, "--name", help="Only runs whose name or id matches: salary, 'sal*'."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (a list of runs) instead of a table."),
) -> None:
    """List runs: id, name, status, data, target, best validation metric, test metric, epochs, duration."""
    import dataclasses
    import json

    from dlrun.run.listing import list_runs

    rows = guarded(lambda: list_runs(runs_dir, sort, name))
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(row) for row in rows], indent=2))
        return
    if not rows:
        stderr.print(escape(f"no runs under {runs_dir}" + (f" matching {name!r}" if name else "")), highlight=False)
        return
    from dlrun.cli.runs_table import runs_table

    console = Console()
    table, left_out = runs_table(rows, sort, console.width, escape(f"runs in {runs_dir}"))
    console.print(table)
    if left_out:
        stderr.print(escape(f"left out to fit {console.width} columns: {', '.join(left_out)} (--json shows every field)"),
                     highlight=False, soft_wrap=True)


explain_app = DlrunTyper(no_args_is_help=True, help="Pictures that explain what the network does.")
app.add_typer(explain_app, name="explain")


@explain_app.command("activations")
def explain_activations(
    output: Path = typer.Option(Path("activations.png"), "--output", help="Where to write the PNG."),
    slope: Optional[float] = typer.Option(None, "--slope", help="leaky_relu's slope below zero (default: model.leaky_relu_slope's)."),
) -> None:
    """Every activation model.activation accepts, and its gradient: where it saturates or dies."""
    from dlrun.probe.explain import explain_activations as draw

    result = guarded(lambda: draw(output) if slope is None else draw(output, slope))
    stderr.print(", ".join(f"{name}: gradient at most {g:.3g}" for name, g in result.max_gradient.items()), highlight=False)
    typer.echo(str(result.path))


@explain_app.command("dropout")
def explain_dropout(
    run: Path = typer.Argument(..., help="A run directory."),
    rows: int = typer.Option(8, "--rows", help="Validation rows to show (1-100)."),
    passes: int = typer.Option(30, "--passes", help="Forward passes in train mode (2-1000)."),
    output: Optional[Path] = typer.Option(None, "--output", help="PNG path (default: RUN/plots/dropout.png)."),
    device: Optional[str] = typer.Option(None, "--device", help="Device (default: cpu)."),
) -> None:
    """Real validation rows through the trained model: outputs vary between passes in train mode (dropout on) and are
    fixed in eval mode."""
    from dlrun.probe.explain import explain_dropout as demo

    result = guarded(lambda: demo(run, rows, passes, output, device))
    table = Table("row", f"true {escape(result.target)}", "eval mode", f"train mode: mean ± std over {result.n_passes} passes",
                  "train min .. max", title=f"dropout on validation rows: {escape(result.quantity)}")
    for r in result.rows:
        table.add_row(str(r.row + 1), escape(r.truth), _fmt(r.eval_value), f"{_fmt(r.train_mean)} ± {_fmt(r.train_std)}",
                      f"{_fmt(r.train_min)} .. {_fmt(r.train_max)}")
    stderr.print(table)
    rates = ", ".join(f"{p:g}" for p in result.dropout)
    repeat = "identical" if result.eval_repeatable else "NOT identical"
    stderr.print(f"dropout per hidden layer: {rates}; two eval-mode passes were {repeat}"
                 + ("; this model has no dropout, so train mode changes nothing" if not any(result.dropout) else ""), highlight=False)
    typer.echo(str(result.path))


@app.command()
def sweep(
    config: Path = typer.Argument(..., help="YAML config file with a search section."),
    trials: Optional[int] = typer.Option(None, "--trials", help="Trials in the whole study (overrides search.trials)."),
    workers: int = typer.Option(1, "--workers", help="Processes on this machine sharing the study."),
    storage: Optional[str] = typer.Option(None, "--storage", help="postgresql://USER@HOST/DB to share the study between machines (default: SQLite in the sweep directory)."),
    study: Optional[str] = typer.Option(None, "--study", help="Study name, also the sweep directory's (default: the config's name)."),
    sampler: Optional[str] = typer.Option(None, "--sampler", help="tpe | random | grid (overrides search.sampler)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Sampler seed (overrides search.seed)."),
    set_: List[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="Override a key: --set train.epochs=50 (value parsed as YAML)."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="The sweep directory is RUNS_DIR/sweeps/STUDY."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N (overrides the config)."),
) -> None:
    """Search hyperparameters; running the same command again continues the study. Prints the sweep directory."""
    from dlrun.config.load import load_config

    options = {"trials": trials, "sampler": sampler, "seed": seed}
    overrides = [*set_, *(f"search.{key}={value}" for key, value in options.items() if value is not None)]

    def run():
        cfg = load_config(config, overrides, device)
        from dlrun.sweeps.driver import sweep as run_sweep

        return run_sweep(cfg, runs_dir, workers, storage, study, report=print_trial)

    summary = guarded(run)
    print_sweep(summary)
    typer.echo(str(summary.sweep_dir))
    if not summary.complete:
        raise typer.Exit(1)


@app.command("sweep-report")
def sweep_report(
    sweep_dir: Path = typer.Argument(..., help="A sweep directory, e.g. runs/sweeps/salary_sweep."),
    storage: Optional[str] = typer.Option(None, "--storage", help="The study's URL when it is not the directory's SQLite file."),
) -> None:
    """Summarise a sweep: trials table, best config, plots (rewritten from the study; no training, no test scoring)."""
    from dlrun.sweeps.summary import summarise

    summary = guarded(lambda: summarise(sweep_dir, storage))
    print_sweep(summary)
    typer.echo(str(summary.sweep_dir))

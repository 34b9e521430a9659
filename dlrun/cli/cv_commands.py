"""`dlrun cv`: k-fold cross-validation (and bagged ensembles); `dlrun train` hands an ensemble config, or --resume of
a cv directory, to the same code (train_folds_if_asked)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from dlrun.cli.app import app
from dlrun.cli.exits import guarded
from dlrun.cli.render import print_warning, stderr
from dlrun.core.text import safe_terminal_text as escape
from dlrun.metrics.names import format_value as fmt, metric_label


@app.command()
def cv(
    config: Optional[Path] = typer.Argument(None, help="YAML config file (omit with --resume)."),
    folds: Optional[int] = typer.Option(None, "--folds", help="Folds of the non-test rows (default: train.ensemble.folds, else 5)."),
    repeats: int = typer.Option(1, "--repeats", help="Repetitions of the k folds, each with the rows reshuffled into folds."),
    ensemble: bool = typer.Option(False, "--ensemble", help="Keep the fold models as one predictor that eval, predict and report use."),
    set_: List[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="Override a key: --set optimizer.lr=0.01 (value parsed as YAML)."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Where the cv directory is created."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N (overrides the config)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue a stopped cv directory (finished folds are kept)."),
) -> None:
    """Cross-validate: one run per fold of the non-test rows (the test split untouched), every metric's mean ± std and
    95% interval over the folds, out-of-fold predictions; prints the cv directory as the last line of stdout."""
    from dlrun.core.errors import ConfigError

    def load():
        if (config is None) == (resume is None):
            raise ConfigError("give a CONFIG file to cross-validate, or --resume CV_DIR to continue one (not both)")
        if resume is not None and (set_ or device or folds or repeats != 1 or ensemble):
            raise ConfigError("--resume continues a cv directory with its own plan and config; give no other option")
        from dlrun.config.load import load_config

        return load_config(config, set_, device) if config else None

    _run_folds(guarded(load), runs_dir, folds, repeats, ensemble, resume)


def train_folds_if_asked(config: Optional[Path], set_: List[str], runs_dir: Path, device: Optional[str],
                         resume: Optional[Path]) -> bool:
    """`dlrun train` with train.ensemble in the config, or --resume of a cv or ensemble directory: trained here, as
    `dlrun cv` would; False (nothing done) for a plain run."""
    from dlrun.run.record import read_record

    if resume is not None:
        if (resume / "run.json").is_file() and guarded(lambda: read_record(resume)).cv is not None:
            if set_ or device:
                guarded(lambda: _refuse("--set and --device cannot change a cv or ensemble directory when it resumes"))
            _run_folds(None, runs_dir, None, 1, False, resume)
            return True
        return False
    if config is None:
        return False
    from dlrun.config.load import load_config

    cfg = guarded(lambda: load_config(config, set_, device))
    if cfg.train.ensemble is None:
        return False
    _run_folds(cfg, runs_dir, None, 1, True, None)
    return True


def _refuse(message: str) -> None:
    from dlrun.core.errors import ConfigError

    raise ConfigError(message)


def _run_folds(cfg, runs_dir: Path, folds: Optional[int], repeats: int, ensemble: bool, resume: Optional[Path]) -> None:
    from dlrun.training.state import Callback

    class FoldBars(Callback):
        """A fresh progress bar per fold run."""

        def __init__(self, epochs: int):
            self.epochs, self.bar = epochs, None

        def on_train_begin(self, state):
            from dlrun.training.callbacks import RichProgress

            self.close()
            self.bar = RichProgress(self.epochs)
            self.bar.on_train_begin(state)

        def on_epoch_end(self, state, row):
            self.bar.on_epoch_end(state, row)

        def on_train_end(self, state):
            self.bar.on_train_end(state)
            self.close()

        def close(self):
            if self.bar is not None:
                self.bar.__exit__(None, None, None)
                self.bar = None

    def announce(repeat: int, fold: int, n_repeats: int, n_folds: int) -> None:
        where = f"repeat {repeat}/{n_repeats}, " if n_repeats > 1 else ""
        stderr.print(f"{where}fold {fold}/{n_folds}", highlight=False)

    from dlrun.run.directory import read_config

    bars = FoldBars((cfg or guarded(lambda: read_config(resume))).train.epochs)

    def run():
        from dlrun.folds.cv import cross_validate, resume_cv

        try:
            if resume is not None:
                return resume_cv(resume, callbacks=[bars], on_fold=announce)
            return cross_validate(cfg, runs_dir, folds, repeats, ensemble, callbacks=[bars], on_fold=announce,
                                  warn=print_warning)
        finally:
            bars.close()

    result = guarded(run)
    for warning in result.warnings:
        print_warning(warning)
    for table in cv_tables(result.summary, result.cfg.data.units):
        stderr.print(table)
    typer.echo(str(result.cv_dir))


def cv_tables(summary: dict, units: dict[str, str]) -> list[Table]:
    """One table per target: each metric's mean ± std and 95% interval over the folds on validation and test, the
    pooled out-of-fold score, and the ensemble's test score when the folds are one predictor."""
    tables = []
    n = summary["folds"] * summary["repeats"]
    for target, metrics in summary["val"].items():
        columns = ["metric", "val mean ± std", "val 95% interval", "out-of-fold", "test mean ± std",
                   *(["test, ensemble"] if "ensemble_test" in summary else [])]
        table = Table(*columns, title=f"target: {escape(target)}; {n} fold runs (val: each fold's held-out rows)")
        for name, val in metrics.items():
            test = summary.get("test", {}).get(target, {}).get(name, {"mean": None, "std": None})
            low, high = val["ci95"]
            row = [escape(metric_label(name, target, units)), f"{fmt(val['mean'])} ± {fmt(val['std'])}",
                   f"[{fmt(low)}, {fmt(high)}]", fmt(summary["out_of_fold"][target][name]),
                   f"{fmt(test['mean'])} ± {fmt(test['std'])}"]
            if "ensemble_test" in summary:
                row.append(fmt(summary["ensemble_test"][target][name]))
            table.add_row(*row)
        tables.append(table)
    return tables

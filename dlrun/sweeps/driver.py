"""`sweep(cfg)`: hyperparameter search with Optuna; each trial is a normal run directory under the sweep directory.

plan_sweep checks everything a user can get wrong (search keys, ranges, objective, data, storage) before any trial
starts; `work` is one worker's loop (any number of them, in processes or on machines, share the study);
sweep_report.summarise writes the trials table, the best config, the final test score and the plots.
"""

from __future__ import annotations

import math
import multiprocessing
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import optuna
import yaml
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from dlrun.run.record import read_record, write_record
from dlrun.training.state import Callback, TrainState
from dlrun.config.schema import Config
from dlrun.config.load import validate_config
from dlrun.core.text import safe_file_name
from dlrun.core.errors import ConfigError, DlrunError
from dlrun.core.io import write_json, write_text
from dlrun.metrics.score import epoch_columns
from dlrun.metrics.names import is_maximised
from dlrun.sweeps.summary import SweepSummary, summarise
from dlrun.config.search import Dimension, SearchConfig, key_problem
from dlrun.sweeps.trials import base_config, fingerprint, trial_config, trial_run_dir
from dlrun.sweeps.study import claim_lock, display_url, heartbeat, lose_trial, next_step, open_storage, open_study, optuna_logs_quiet, optuna_quiet, reap_dead_workers, sqlite_url, worker_id

# Seconds a worker with nothing to run waits before looking again: a running trial elsewhere may yet be lost.
POLL_S = 2.0
STUDY_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class SweepPlan:
    """What every worker needs, as plain values: it crosses into worker processes."""

    config_yaml: str  # the checked config, search section included
    sweep_dir: str
    storage_url: str
    study: str
    objective: str
    direction: str  # minimize | maximize
    budget: int  # trials in the whole study


@dataclass(frozen=True)
class TrialResult:
    """One finished trial, as a worker reports it."""

    number: int
    state: str  # complete | pruned | failed
    params: dict[str, Any]
    value: float | None
    run_dir: Path | None
    seconds: float
    note: str = ""


def plan_sweep(cfg: Config, runs_dir: Path | str = "runs", storage: str | None = None, study: str | None = None) -> SweepPlan:
    """Check the search space, the objective, the data and the storage; create (or find) the sweep directory."""
    search = cfg.search
    if search is None:
        raise ConfigError("the config has no search section; add search.space (see configs/salary_sweep.yaml)")
    name = study or cfg.name
    if not STUDY_NAME.fullmatch(name) or safe_file_name(name) != name:  # `..` would name the folder above
        raise ConfigError(f"--study: {name!r} must use only letters, digits, '_', '.' and '-', start with a letter, digit "
                          "or '-', hold no '..' and be at most 100 characters (it names the sweep directory)")
    base = base_config(cfg)
    for key, dim in search.space.items():
        problem = key_problem(key, Config)
        if problem:
            raise ConfigError(f"search.space: {problem}")
        for value in dim.extremes():  # every config a trial may build is valid once its extreme values are
            trial_config(base, {key: value}, source=f"search.space.{key} = {value!r}")
    objective = resolve_objective(cfg)
    direction = search.direction if search.direction != "auto" else ("maximize" if is_maximised(objective) else "minimize")
    budget = search.trials
    if search.sampler == "grid":  # the whole grid, unless fewer trials were asked for
        budget = min(budget, search.grid_size()) if "trials" in search.model_fields_set else search.grid_size()
    sweep_dir = Path(runs_dir) / "sweeps" / name
    url = storage or sqlite_url(sweep_dir / "study.db")
    if storage is not None:
        open_storage(url)  # an unreachable server fails here, before the sweep directory exists
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--runs-dir {runs_dir}: cannot create {sweep_dir} ({exc.strerror or exc})") from None
    open_study(open_storage(url), name, direction, fingerprint(cfg))
    write_text(sweep_dir / "sweep.yaml", cfg.to_yaml())
    write_json(sweep_dir / "sweep.json", {"study": name, "storage": display_url(storage) if storage else None,
                                          "objective": objective, "direction": direction, "sampler": search.sampler,
                                          "pruner": search.chosen_pruner,
                                          "seed": sampler_seed(cfg), "trials": budget})
    return SweepPlan(cfg.to_yaml(), str(sweep_dir), url, name, objective, direction, budget)


def resolve_objective(cfg: Config) -> str:
    """search.objective, else the early-stopping metric when it is a validation metric, else val_loss; checked
    against the columns the data's targets will record (this loads and checks the data too)."""
    from dlrun.data.load import load_dataset

    stopping = cfg.train.early_stopping
    objective = cfg.search.objective or (stopping.metric if stopping and stopping.metric.startswith("val_") else "val_loss")
    allowed = [column for column in epoch_columns(load_dataset(cfg.data, cfg.seed).tasks) if column.startswith("val_")]
    if objective not in allowed:
        raise ConfigError(f"search.objective: {objective!r} is not a validation metric of this data; allowed: {', '.join(allowed)}")
    return objective


def sampler_seed(cfg: Config) -> int:
    return cfg.search.seed if cfg.search.seed is not None else cfg.seed % 2**32


def distributions(space: dict[str, Dimension]) -> dict[str, BaseDistribution]:
    result: dict[str, BaseDistribution] = {}
    for key, dim in space.items():
        if dim.choice is not None:
            result[key] = CategoricalDistribution(dim.encoded_choices())
        elif dim.kind == "integer":
            result[key] = IntDistribution(*dim.bounds)
        else:
            result[key] = FloatDistribution(*dim.bounds, log=dim.is_log)
    return result


class _GridSampler(optuna.samplers.GridSampler):
    def after_trial(self, study, trial, state, values) -> None:
        """The trial budget (at most the grid's size) ends a grid sweep; optuna's study.stop() works only in optimize()."""


def make_sampler(search: SearchConfig, seed: int, number: int) -> optuna.samplers.BaseSampler:
    """A sampler seeded from the sweep's seed and the trial's number: a re-run or a second worker continues the
    sequence instead of proposing the first trials again, and one worker proposes the same trials every time."""
    if search.sampler == "grid":  # its seed shuffles the grid once; trial n then takes grid point n
        return _GridSampler(search.grid(), seed=seed)
    trial_seed = (seed * 1_000_003 + number) % 2**32
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=trial_seed)
    return optuna.samplers.TPESampler(seed=trial_seed)


def make_pruner(search: SearchConfig) -> optuna.pruners.BasePruner:
    if search.chosen_pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=search.prune_warmup_epochs)
    if search.chosen_pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, search.prune_warmup_epochs), reduction_factor=3)
    return optuna.pruners.NopPruner()


class TrialReport(Callback):
    """Reports each epoch's objective to the trial; stops training when the pruner finds the trial hopeless."""

    def __init__(self, trial: optuna.Trial, objective: str, pruner: str):
        self.trial, self.objective, self.pruner = trial, objective, pruner
        self.pruned = False
        self.value: float | None = None

    def on_epoch_end(self, state: TrainState, row: dict[str, float]) -> None:
        value = row[self.objective]
        self.trial.report(value, state.epoch)
        if self.trial.should_prune():
            self.pruned = state.stop = True
            state.stop_reason = f"pruned by the sweep's {self.pruner} pruner: {self.objective} {value:.4g} at epoch {state.epoch}"

    def on_train_end(self, state: TrainState) -> None:
        # The kept weights are the best epoch's (by train.early_stopping.metric): the trial is scored on that epoch.
        self.value = next(row[self.objective] for row in state.history if row["epoch"] == state.best_epoch)


def mark_lost_run(sweep_dir: Path) -> Callable[[FrozenTrial, str], None]:
    def mark(trial: FrozenTrial, why: str) -> None:
        run_dir = trial_run_dir(sweep_dir, trial.number)
        record = read_record(run_dir) if run_dir is not None else None
        if record is not None and record.status == "running":  # an interrupted run already says so itself
            write_record(run_dir, record.updated(status="failed", error=f"sweep trial lost: {why}; re-queued"))
    return mark


@optuna_logs_quiet()
def work(plan: SweepPlan, callbacks: Sequence[Callback] = (), report: Callable[[TrialResult], None] | None = None) -> None:
    """One worker: take the next trial under the claim lock, train it, record it; until the study has its trials."""
    cfg = validate_config(yaml.safe_load(plan.config_yaml), source="sweep config")
    sweep_dir, search, base = Path(plan.sweep_dir), cfg.search, base_config(cfg)
    mark = mark_lost_run(sweep_dir)
    storage = open_storage(plan.storage_url, on_lost=lambda study, t: lose_trial(study, t, mark, "no heartbeat"))
    study = optuna.load_study(study_name=plan.study, storage=storage, pruner=make_pruner(search))
    space = distributions(search.space)
    while True:
        with claim_lock(storage, plan.storage_url, plan.study), optuna_quiet():
            reap_dead_workers(study, storage, mark)
            optuna.storages.fail_stale_trials(study)
            trials = study.get_trials(deepcopy=False)
            step = next_step(trials, plan.budget)
            if step == "run":
                study.sampler = make_sampler(search, sampler_seed(cfg), len(trials))
                trial = study.ask(space)
                trial.set_user_attr("worker", worker_id())
        if step == "done":
            return
        if step == "wait":
            time.sleep(POLL_S)
            continue
        with heartbeat(storage, trial._trial_id):
            result = _run_trial(plan, study, trial, base, search, callbacks)
        if report is not None:
            report(result)


def _run_trial(plan: SweepPlan, study: optuna.Study, trial: optuna.Trial, base: dict[str, Any], search: SearchConfig,
               callbacks: Sequence[Callback]) -> TrialResult:
    from dlrun.run.runner import train

    sweep_dir, started = Path(plan.sweep_dir), time.monotonic()
    params = {key: dim.decode(trial.params[key]) for key, dim in search.space.items()}
    reporter = TrialReport(trial, plan.objective, search.chosen_pruner)

    def finish(state: TrialState, value: float | None, run_dir: Path | None, note: str = "") -> TrialResult:
        if note:
            trial.set_user_attr("note", note)
        study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
        label = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned"}.get(state, "failed")
        return TrialResult(trial.number, label, params, value, run_dir, time.monotonic() - started, note)

    try:
        cfg = trial_config(base, params, source=f"trial {trial.number}", name=f"{base['name']}-trial{trial.number:04d}")
        if search.cv_folds:  # scored by the objective's mean over k folds (sweeps/cv_trials.py)
            from dlrun.sweeps.cv_trials import cv_trial

            run, reporter.value = cv_trial(cfg, sweep_dir / "trials", search.cv_folds, plan.objective, callbacks)
        else:
            run = train(cfg, sweep_dir / "trials", callbacks=[reporter, *callbacks], score_test=False)
    except DlrunError as exc:
        return finish(TrialState.FAIL, None, trial_run_dir(sweep_dir, trial.number), str(exc))
    except KeyboardInterrupt:
        study.tell(trial, state=TrialState.FAIL)
        lose_trial(study, study._storage.get_trial(trial._trial_id), mark_lost_run(sweep_dir), "interrupted")
        # a plain one: the trial's own resume command (run/interrupts.RunInterrupted) is not how a sweep continues
        raise KeyboardInterrupt from None
    except BaseException:
        study.tell(trial, state=TrialState.FAIL)
        raise
    trial.set_user_attr("run_dir", str(run.run_dir.relative_to(sweep_dir)))
    trial.set_user_attr("epochs", run.epochs_run)
    trial.set_user_attr("best_epoch", run.best_epoch)
    trial.set_user_attr("val_metrics", run.metrics["val"])  # {target: {metric: value}}, also for other machines
    state = TrialState.PRUNED if reporter.pruned else TrialState.COMPLETE
    record = read_record(run.run_dir)
    write_record(run.run_dir, record.updated(sweep={"study": plan.study, "trial": trial.number, "params": params,
                                                    "state": state.name.lower(), "objective": plan.objective}))
    if reporter.value is None or not math.isfinite(reporter.value):
        return finish(TrialState.FAIL, None, run.run_dir, f"{plan.objective} is {reporter.value} (training diverged)")
    return finish(state, reporter.value, run.run_dir, run.stop_reason if reporter.pruned else "")


def _work_in_process(plan: SweepPlan, callbacks: Sequence[Callback], report: Callable[[TrialResult], None] | None,
                     errors: Any) -> None:
    """A worker process's entry point: a user's error goes back to the parent (`errors`, a queue), which raises it, so
    exit codes stay with the CLI. Ctrl-C reaches the parent too, which re-raises it; the worker just stops."""
    try:
        work(plan, callbacks, report)
    except DlrunError as exc:
        errors.put(f"{type(exc).__name__}:{exc}")
    except KeyboardInterrupt:
        pass


def sweep(cfg: Config, runs_dir: Path | str = "runs", workers: int = 1, storage: str | None = None,
          study: str | None = None, callbacks: Sequence[Callback] = (),
          report: Callable[[TrialResult], None] | None = None) -> SweepSummary:
    """Run (or continue) the study until it has its trials, then summarise it and score the best trial on test once.

    workers > 1 starts that many processes; each takes trials from the shared study until none are left. A worker
    that dies loses only its current trial, which is re-queued for the others (or for the next run of the sweep).
    """
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    plan = plan_sweep(cfg, runs_dir, storage, study)
    notes = []
    if workers == 1:
        work(plan, callbacks, report)
    else:
        notes = _run_workers(plan, workers, callbacks, report)
    return summarise(Path(plan.sweep_dir), storage_url=plan.storage_url, score_test=True, notes=notes)


def _run_workers(plan: SweepPlan, workers: int, callbacks: Sequence[Callback],
                 report: Callable[[TrialResult], None] | None) -> list[str]:
    """Start the worker processes and wait for them; the trial of one that dies is re-queued at once."""
    context = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools into the children
    errors = context.Queue()
    processes = [context.Process(target=_work_in_process, args=(plan, callbacks, report, errors), name=f"dlrun-sweep-worker-{n}")
                 for n in range(workers)]
    for process in processes:
        process.start()
    notes, running = [], list(processes)
    storage = open_storage(plan.storage_url)
    study = optuna.load_study(study_name=plan.study, storage=storage)
    try:
        while running:
            for process in list(running):
                process.join(timeout=0.5)
                if process.exitcode is None:
                    continue
                running.remove(process)
                if process.exitcode != 0:
                    with claim_lock(storage, plan.storage_url, plan.study), optuna_quiet():
                        lost = reap_dead_workers(study, storage, mark_lost_run(Path(plan.sweep_dir)))
                    requeued = f"; trial {', '.join(map(str, lost))} re-queued" if lost else ""
                    notes.append(f"worker {process.name} (pid {process.pid}) stopped with exit status {process.exitcode}{requeued}")
    except KeyboardInterrupt:
        for process in running:
            process.join(timeout=30)  # the same Ctrl-C reached the workers: let them record their trials
        raise
    _raise_worker_error(errors)
    return notes


def _raise_worker_error(errors: Any) -> None:
    """The first user error a worker met, raised here as it was raised there (every worker meets the same one)."""
    import queue

    from dlrun.core import errors as error_kinds

    try:  # the workers have exited, so what they put is already in the pipe
        kind, _, message = errors.get_nowait().partition(":")
    except queue.Empty:
        return
    error = getattr(error_kinds, kind, DlrunError)
    raise (error if isinstance(error, type) and issubclass(error, DlrunError) else DlrunError)(message)

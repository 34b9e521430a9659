"""A sweep directory's summary, from its study: trials.csv, best_config.yaml, sweep.json and the plots.

The best trial is scored on the test split once, when the study is complete, and the score is kept in the study:
trials are chosen on validation scores only, and a later report shows the same test score without scoring again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import yaml
from optuna.trial import FrozenTrial, TrialState

from dlrun.core.errors import RunError
from dlrun.core.io import read_json, write_csv, write_json, write_text
from dlrun.config.schema import Config
from dlrun.config.load import load_config, validate_config
from dlrun.run import layout
from dlrun.data.load import resolve_units
from dlrun.sweeps.study import counted, open_storage, require_study, retry_of, sqlite_url


@dataclass(frozen=True)
class SweepSummary:
    sweep_dir: Path
    study: str
    objective: str
    direction: str
    budget: int
    states: dict[str, int]  # complete / pruned / failed / running / waiting -> trial count
    complete: bool  # the study has all its trials and none is still running
    trials: pd.DataFrame  # the trials table, best first
    best: dict[str, Any] | None  # number, value, params, run_dir, val and test metrics
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def summarise(sweep_dir: Path, storage_url: str | None = None, score_test: bool = False, notes: list[str] = ()) -> SweepSummary:
    """Write the sweep directory's summary files from the study; with score_test, score a new best trial on test."""
    sweep_dir = Path(sweep_dir)
    info_path = sweep_dir / "sweep.json"
    if not info_path.is_file():
        raise RunError(f"{sweep_dir} is not a sweep directory: sweep.json is missing")
    try:
        info = read_json(info_path)
    except (ValueError, OSError) as exc:
        raise RunError(f"{info_path} is damaged ({exc})") from None
    url = storage_url or (info["storage"] if info.get("storage") else sqlite_url(sweep_dir / "study.db"))
    if "***" in url:
        raise RunError(f"{sweep_dir}'s study is in {url}; give its full URL with --storage (the password is not saved)")
    if url.startswith("sqlite") and not (sweep_dir / "study.db").is_file() and not info.get("storage"):
        raise RunError(f"{sweep_dir} is not a sweep directory: study.db is missing")
    storage = open_storage(url)
    study = require_study(storage, info["study"])
    trials = study.get_trials(deepcopy=False)
    states = {state: sum(t.state.name.lower() == state for t in counted(trials))
              for state in ("complete", "pruned", "fail", "running", "waiting")}
    states["failed"] = states.pop("fail")
    complete = len(counted(trials)) >= info["trials"] and not states["running"] and not states["waiting"]
    table = trials_table(trials, info["direction"])
    files = [sweep_dir / "trials.csv"]
    write_csv(files[0], table)
    best = _best(study, sweep_dir, complete and score_test)
    if best is not None:
        files.append(sweep_dir / "best_config.yaml")
        write_text(files[-1], best.pop("config_yaml"))
    notes = list(notes)
    if best is not None and best["test"] is None:
        notes.append("the best trial is scored on the test split once the study is complete" if not complete else
                     "the best trial ran on another machine: its test score is written there")
    summary = {**info, "states": states, "complete": complete, "best": best}
    write_json(sweep_dir / "sweep.json", {**summary, "best": best and {**best, "run_dir": best["run_dir"] and str(best["run_dir"])}})
    from dlrun.sweeps.plots import plot_sweep

    importances, why_not = _importances(study)
    if why_not:
        notes.append(why_not)
    space = load_sweep_config(sweep_dir).search.space
    files += plot_sweep(sweep_dir, trials, space, info["objective"], info["direction"], importances,
                        best["trial"] if best is not None else None)
    return SweepSummary(sweep_dir, info["study"], info["objective"], info["direction"], info["trials"], states, complete,
                        table, best, files, notes)


def load_sweep_config(sweep_dir: Path) -> Config:
    """The config the sweep was started with (sweep.yaml), search section included."""
    return load_config(Path(sweep_dir) / "sweep.yaml")


def trials_table(trials: list[FrozenTrial], direction: str) -> pd.DataFrame:
    """One row per trial: number, state, objective, duration, parameters, epochs and run directory; best first."""
    rows = []
    for t in trials:
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else None
        retried = retry_of(t)
        rows.append({"trial": t.number, "state": t.state.name.lower(), "objective": t.value, "seconds": seconds,
                     **{f"param:{key}": value for key, value in t.params.items()},
                     "epochs": t.user_attrs.get("epochs"), "run_dir": t.user_attrs.get("run_dir"),
                     "note": t.user_attrs.get("note", "") + (f"re-run of trial {retried}" if retried is not None else "")})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    order = {"complete": 0, "pruned": 1}
    frame["_rank"] = frame["state"].map(lambda s: order.get(s, 2))
    frame = frame.sort_values(["_rank", "objective", "trial"], ascending=[True, direction == "minimize", True], na_position="last")
    return frame.drop(columns="_rank").reset_index(drop=True)


def _best(study: optuna.Study, sweep_dir: Path, score_test: bool) -> dict[str, Any] | None:
    """The best complete trial: its values, its config as YAML, its val and (once scored) test metrics."""
    from dlrun.sweeps.trials import trial_run_dir

    if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        return None
    best = study.best_trial
    run_dir = trial_run_dir(sweep_dir, best.number)
    scored = study.user_attrs.get("test_score") or {}
    test = scored.get("metrics") if scored.get("trial") == best.number else None
    if test is None and score_test and run_dir is not None:
        from dlrun.inference.batch import evaluate

        test = evaluate(run_dir, split="test").metrics  # the one look at the test split; also eval.json in the run
        study.set_user_attr("test_score", {"trial": best.number, "metrics": test})
    config_yaml = (run_dir / layout.CONFIG).read_text() if run_dir is not None else _config_from_params(sweep_dir, best)
    # Trials skip their plots (trials.trial_config); the winner, trained again, is a normal run with its report.
    config = validate_config(yaml.safe_load(config_yaml), source="best_config.yaml")
    config_yaml = config.model_copy(update={"report": load_sweep_config(sweep_dir).report}).to_yaml()
    units = resolve_units(config.data)
    val = best.user_attrs.get("val_metrics")
    if not isinstance(val, dict) or not all(isinstance(scores, dict) for scores in val.values()):
        val = None  # a study written by another program, or damaged: show no validation scores rather than fail
    return {"trial": best.number, "value": best.value, "params": _decoded(sweep_dir, best), "run_dir": run_dir,
            "val": val, "test": test, "units": units, "config_yaml": config_yaml}


def _decoded(sweep_dir: Path, trial: FrozenTrial) -> dict[str, Any]:
    space = load_sweep_config(sweep_dir).search.space
    return {key: space[key].decode(value) if key in space else value for key, value in trial.params.items()}


def _config_from_params(sweep_dir: Path, trial: FrozenTrial) -> str:
    """The best trial ran on another machine: rebuild its config from the sweep's and the trial's values."""
    from dlrun.sweeps.trials import base_config, trial_config

    cfg = load_sweep_config(sweep_dir)
    name = f"{cfg.name}-trial{trial.number:04d}"
    return trial_config(base_config(cfg), _decoded(sweep_dir, trial), source=f"trial {trial.number}", name=name).to_yaml()


def _importances(study: optuna.Study) -> tuple[dict[str, float] | None, str]:
    """fANOVA parameter importances, or why there are none yet."""
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    varied = {key for key in (done[0].params if done else {}) if len({repr(t.params.get(key)) for t in done}) > 1}
    if len(done) < 3 or not varied:
        return None, "parameter importances need at least 3 complete trials with different values"
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    return optuna.importance.get_param_importances(study, evaluator=evaluator), ""

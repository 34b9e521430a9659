"""The search section: what a dimension accepts, which keys exist, how proposed values become config values."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from dlrun.config.schema import Config
from dlrun.config.load import validate_config
from dlrun.core.errors import ConfigError
from dlrun.sweeps.driver import distributions, make_sampler
from dlrun.config.search import Dimension, SearchConfig, key_problem
from dlrun.sweeps.study import counted, next_step

from conftest import FAST, merge


def search_config(**search) -> Config:
    return validate_config(merge(FAST, {"data": {"dataset": "animals"}, "search": search}))


@pytest.mark.parametrize("dimension, message", [
    ({"uniform": [0.5, 0.5]}, r"uniform: the range \[0.5, 0.5\] is empty; low must be below high"),
    ({"integer": [8, 2]}, r"integer: the range \[8, 2\] is empty"),
    ({"log_uniform": [0.0, 1.0]}, "log_uniform: low must be > 0"),
    ({"choice": []}, "choice: the list is empty"),
    ({"uniform": [0, 1], "choice": [1]}, "give exactly one of choice, uniform, log_uniform, integer"),
    ({}, r"give exactly one of .* \(got none\)"),
    ({"uniform": [0, 1], "grid": [0.5, 2]}, r"grid: points must lie in \[0.0, 1.0\] \(outside: \[2.0\]\)"),
])
def test_bad_dimension_names_the_searched_key(dimension, message):
    with pytest.raises(ConfigError, match=message) as caught:
        search_config(space={"optimizer.lr": dimension})
    assert "search.space.optimizer.lr" in str(caught.value)


def test_grid_sampler_needs_points_for_ranges():
    with pytest.raises(ConfigError, match="sampler grid needs a choice list or grid points .* optimizer.lr"):
        search_config(sampler="grid", space={"optimizer.lr": {"uniform": [0.1, 0.2]}, "model.norm": {"choice": ["none"]}})
    search = search_config(sampler="grid", space={"optimizer.lr": {"log_uniform": [1e-4, 1e-1], "grid": [1e-3, 1e-2]},
                                                  "model.hidden": {"choice": [[8], [16, 8]]}}).search
    assert search.grid() == {"optimizer.lr": [1e-3, 1e-2], "model.hidden": ["[8]", "[16, 8]"]}
    assert search.grid_size() == 4


def test_empty_space_is_rejected():
    with pytest.raises(ConfigError, match="search.space"):
        search_config(space={})


@pytest.mark.parametrize("key, problem", [
    ("optimizer.lr", None),
    ("train.early_stopping.patience", None),
    ("data.split.train", None),
    ("train.loss_weight.price", None),  # a mapping's keys are checked by validating the config
    ("optimizer.lrr", "'optimizer.lrr' is not a config key; did you mean 'optimizer.lr'?"),
    ("optimiser.lr", "'optimiser' is not a config key; did you mean 'optimizer'?"),
    ("optimizer", "'optimizer' is a section, not a value"),
    ("optimizer.lr.x", "'optimizer.lr' is a value, not a section"),
    ("search.trials", "'search' is not a config key"),
])
def test_key_problem(key, problem):
    found = key_problem(key, Config)
    assert found == problem if problem is None else problem in found


def test_list_choices_round_trip_through_optuna_values():
    dim = Dimension(choice=[[64, 32], [128], "relu", 0.1])
    assert dim.encoded_choices() == ["[64, 32]", "[128]", "relu", 0.1]
    assert [dim.decode(value) for value in dim.encoded_choices()] == [[64, 32], [128], "relu", 0.1]
    assert Dimension(integer=(1, 9)).decode(4.0) == 4 and isinstance(Dimension(integer=(1, 9)).decode(4.0), int)


def _proposals(search: SearchConfig, seed: int, n: int) -> list[dict]:
    study = optuna.create_study()
    space = distributions(search.space)
    proposed = []
    for number in range(n):
        study.sampler = make_sampler(search, seed, number)
        trial = study.ask(space)
        proposed.append(trial.params)
        study.tell(trial, sum(v for v in trial.params.values() if isinstance(v, float)))
    return proposed


@pytest.mark.parametrize("sampler", ["random", "tpe", "grid"])
def test_same_seed_proposes_the_same_trials(sampler):
    space = {"optimizer.lr": {"log_uniform": [1e-6, 1e-2], "grid": [1e-5, 1e-4, 1e-3]},
             "optimizer.momentum": {"uniform": [0.85, 0.99], "grid": [0.9, 0.95]}}
    search = search_config(sampler=sampler, space=space).search
    first, again, other = _proposals(search, 7, 6), _proposals(search, 7, 6), _proposals(search, 8, 6)
    assert first == again
    assert first != other
    if sampler == "grid":  # every grid point once
        assert len({tuple(p.values()) for p in first}) == 6
    else:
        assert all(1e-6 <= p["optimizer.lr"] <= 1e-2 and 0.85 <= p["optimizer.momentum"] <= 0.99 for p in first)


def _trial(number: int, state: TrialState, retry_of: int | None = None):
    attrs = {"failed_trial": retry_of, "retry_history": [retry_of]} if retry_of is not None else {}
    trial = create_trial(state=state, value=1.0 if state == TrialState.COMPLETE else None, system_attrs=attrs)
    trial.number = number
    return trial


def test_a_lost_and_requeued_trial_does_not_use_up_the_budget():
    trials = [_trial(0, TrialState.COMPLETE), _trial(1, TrialState.FAIL), _trial(2, TrialState.WAITING, retry_of=1)]
    assert [t.number for t in counted(trials)] == [0, 2]
    assert next_step(trials, budget=2) == "run"  # the re-queued copy still has to run
    trials[2] = _trial(2, TrialState.RUNNING, retry_of=1)
    assert next_step(trials, budget=2) == "wait"  # it may yet be lost again
    trials[2] = _trial(2, TrialState.COMPLETE, retry_of=1)
    assert next_step(trials, budget=2) == "done"
    assert next_step(trials, budget=3) == "run"
    # a trial that failed on its own (a bad combination of values) counts: it is not re-queued
    assert next_step([_trial(0, TrialState.FAIL)], budget=1) == "done"

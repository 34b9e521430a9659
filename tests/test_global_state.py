"""Importing dlrun changes no process-wide setting: other libraries' log levels, the umask, the RNG."""

from __future__ import annotations

import subprocess
import sys

import optuna

from dlrun.sweeps import study as sweep_study


def test_importing_the_sweep_modules_leaves_optunas_log_level_alone():
    code = ("import optuna; optuna.logging.set_verbosity(optuna.logging.DEBUG); "
            "import dlrun.sweeps.driver, dlrun.sweeps.summary, dlrun.sweeps.plots; "
            "print(optuna.logging.get_verbosity())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(done.stdout) == optuna.logging.DEBUG


def test_a_sweep_quiets_optuna_only_while_it_runs(tmp_path, monkeypatch):
    seen, real_create = [], optuna.create_study

    def create_study(**kwargs):
        seen.append(optuna.logging.get_verbosity())
        return real_create(**kwargs)

    monkeypatch.setattr(optuna, "create_study", create_study)
    before = optuna.logging.get_verbosity()
    storage = sweep_study.open_storage(sweep_study.sqlite_url(tmp_path / "study.db"))
    sweep_study.open_study(storage, "s", "minimize", {"seed": 0})
    assert seen == [optuna.logging.WARNING]  # "A new study created" is not printed
    assert optuna.logging.get_verbosity() == before

"""bench/startup.py times `dlrun train` up to the training loop through a wrapper of fit: it must still see fit."""

from __future__ import annotations

import sys

import pytest

from conftest import REPO, write_config

sys.path.insert(0, str(REPO / "bench"))
import startup  # noqa: E402  (bench/startup.py is a script beside the package, not part of it)


@pytest.mark.slow
def test_the_startup_probe_sees_the_training_loop_start_once(tmp_path):
    config = write_config(tmp_path / "c.yaml", {"dataset": "salary"}, train={"epochs": 1})
    seconds = startup.startup_seconds(str(config), tmp_path / "runs")
    assert seconds > 0
    assert len(list((tmp_path / "runs").iterdir())) == 1  # the run went ahead under the probe

"""Install anywhere: a non-editable install carries the built-in data sets and trains on them outside the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_a_regular_install_trains_on_a_builtin_data_set_from_an_empty_directory(tmp_path):
    # Build from a copy: pip builds a local project in place, and its build/ and egg-info must not land in the checkout.
    source = tmp_path / "source"
    shutil.copytree(REPO / "dlrun", source / "dlrun", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    venv = tmp_path / "venv"
    # The venv sees the installed dependencies (torch alone is gigabytes) and their pip and setuptools (a venv's own
    # are the old ones bundled with Python); dlrun itself is installed into the venv.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python, dlrun = venv / "bin" / "python", venv / "bin" / "dlrun"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the checkout must not be on the path
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    str(source)], check=True, env=env, capture_output=True)
    shutil.rmtree(source)  # nothing may read the source tree from here on

    workdir = tmp_path / "empty"
    workdir.mkdir()
    where = subprocess.run([python, "-c", "import dlrun; print(dlrun.__file__)"], cwd=workdir, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(venv), where  # the installed copy, not the editable checkout

    (workdir / "cfg.yaml").write_text(yaml.safe_dump({
        "name": "installed", "seed": 0, "device": "cpu", "report": False,
        "data": {"dataset": "salary"}, "model": {"hidden": [8]}, "train": {"epochs": 2}}))
    done = subprocess.run([dlrun, "train", "cfg.yaml", "--runs-dir", "runs"], cwd=workdir, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (run_dir,) = (workdir / "runs").iterdir()
    assert (run_dir / "metrics.csv").read_text().count("\n") == 3  # header and two epochs

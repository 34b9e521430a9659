"""`dlrun export --format onnx`: ONNX Runtime on the exported file gives what `dlrun predict` gives, on the test rows of
every shipped config (with missing values and unseen categories put in), and for every scaling and embedding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import CONFIGS, FAST, merge, run_cli

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

SHIPPED = sorted(path.stem for path in CONFIGS.glob("*.yaml"))
# The preprocessing and network variants the shipped configs do not use, each on a small shipped table.
VARIANTS = {
    "quantile+piecewise+embedded": ("salary", {"preprocess": {"scale": "quantile", "embed_categories_above": 1},
                                               "model": {"num_embeddings": "piecewise_linear"}}),
    "robust+tabm+periodic": ("customers", {"preprocess": {"scale": "robust"},
                                           "model": {"type": "tabm", "k": 4, "num_embeddings": "periodic"}}),
    "minmax+indicators": ("salary", {"preprocess": {"scale": "minmax", "missing_indicators": True,
                                                    "categorical_impute": "most_frequent"}}),
}
UNSEEN = "never-seen"


def train_config(name: str, extra: dict, runs: Path) -> Path:
    import dlrun
    from dlrun.config.load import validate_config

    raw = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    raw.pop("search", None)  # a sweep config trains as one run
    cfg = merge(merge(raw, FAST), {"train": {"epochs": 2}, **extra})
    return dlrun.train(validate_config(cfg), runs).run_dir


def held_out_rows(run_dir: Path) -> pd.DataFrame:
    """The run's test split as written in its file (text as text), with about 10% of each feature's cells emptied or,
    for text columns, half of those set to a category never seen."""
    from dlrun.data.load import BUILTINS, builtin_path, load_dataset, read_csv, read_frame
    from dlrun.run.directory import open_run_files

    saved = open_run_files(run_dir)
    data = saved.cfg.data
    test_index = load_dataset(data, saved.cfg.seed, tasks=saved.prep.tasks).part("test").index
    if data.dataset == "synthetic":
        whole = read_frame(data, saved.cfg.seed)
    else:
        whole = read_csv(builtin_path(BUILTINS[data.dataset]["file"]) if data.dataset else Path(data.path), as_text=True)
    rows = whole.loc[test_index, saved.prep.features].reset_index(drop=True)
    rng = np.random.default_rng(0)
    for column in saved.prep.features:
        chosen = rng.choice(len(rows), size=max(2, len(rows) // 10), replace=False)
        rows[column] = rows[column].astype(object)
        if column in saved.prep.categorical_features:
            rows.loc[chosen[: len(chosen) // 2], column] = UNSEEN
            chosen = chosen[len(chosen) // 2:]
        rows.loc[chosen, column] = np.nan
    return rows


def onnx_inputs(frame: pd.DataFrame, sidecar: dict) -> dict[str, np.ndarray]:
    """The graph's inputs from rows as dlrun reads them: float64 with NaN, or strings with "" for missing."""
    feed = {}
    for spec in sidecar["inputs"]:
        values = frame[spec["name"]]
        if spec["type"] == "float64":
            feed[spec["name"]] = pd.to_numeric(values).to_numpy(np.float64)
        else:
            feed[spec["name"]] = values.astype(object).where(values.notna(), "").astype(str).to_numpy(object)
    return feed


def assert_onnx_matches_predict(run_dir: Path, tmp_path: Path) -> dict:
    from dlrun.data.audit import check_rows
    from dlrun.export.run_export import export_run
    from dlrun.inference.batch import predict
    from dlrun.run.directory import open_run_files

    prep = open_run_files(run_dir).prep
    exported = export_run(run_dir, tmp_path / "model.onnx")
    sidecar = json.loads(exported.sidecar.read_text())
    rows = held_out_rows(run_dir)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    result = predict(run_dir, tmp_path / "rows.csv", tmp_path / "predicted.csv")
    expected = pd.read_csv(tmp_path / "predicted.csv", keep_default_na=False, na_values=[""])
    assert not result.rows_check.clean  # the injected gaps and unseen categories reached predict

    cleaned, _ = check_rows(prep, pd.read_csv(tmp_path / "rows.csv"))
    session = ort.InferenceSession(str(exported.model), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == prep.features
    names = [o.name for o in session.get_outputs()]
    assert names == sidecar["outputs"] == [c for c in expected.columns if c not in rows.columns]
    got = dict(zip(names, session.run(None, onnx_inputs(cleaned, sidecar))))
    for target in sidecar["targets"]:
        name = target["name"]
        if target["task"] == "classification":
            assert got[f"{name}_pred"].astype(str).tolist() == expected[f"{name}_pred"].astype(str).tolist()
            for label in target["classes"]:
                np.testing.assert_allclose(got[f"{name}_proba_{label}"], expected[f"{name}_proba_{label}"], rtol=0, atol=1e-5)
        else:  # the network is float32 in both: compare in the target's own scale
            spread = prep.regression_scale(name)
            np.testing.assert_allclose(got[f"{name}_pred"], expected[f"{name}_pred"], rtol=1e-5, atol=1e-5 * spread)
    return sidecar


@pytest.mark.parametrize("config", SHIPPED)
def test_onnx_equals_predict_on_every_shipped_config(config, tmp_path):
    run_dir = train_config(config, {}, tmp_path / "runs")
    sidecar = assert_onnx_matches_predict(run_dir, tmp_path)
    assert {f["kind"] for f in sidecar["features"]} <= {"number", "category"}


@pytest.mark.parametrize("variant", VARIANTS)
def test_onnx_equals_predict_for_scalings_and_embeddings(variant, tmp_path):
    config, extra = VARIANTS[variant]
    run_dir = train_config(config, extra, tmp_path / "runs")
    assert_onnx_matches_predict(run_dir, tmp_path)


def test_quantile_and_normal_functions_match_numpy_and_scipy():
    import onnx
    from onnx import TensorProto, helper
    from scipy.special import ndtr, ndtri

    from dlrun.export.graph import GraphBuilder

    def run(build, x):
        b = GraphBuilder()
        b.op("Identity", build(b, "x"), output="y")
        graph = helper.make_graph(b.nodes, "g", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["n"])],
                                  [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["n"])], initializer=b.initializers)
        model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 18)])
        onnx.checker.check_model(model)
        return ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]

    p = np.concatenate([np.linspace(1e-7, 1 - 1e-7, 2001), [0.075, 0.925, 0.5]])
    np.testing.assert_allclose(run(lambda b, x: b.normal_ppf(x), p), ndtri(p), rtol=0, atol=1e-12)
    v = np.linspace(-9, 9, 2001)
    np.testing.assert_allclose(run(lambda b, x: b.normal_cdf(x), v), ndtr(v), rtol=1e-9, atol=1e-11)
    xp, fp = np.array([0, 1, 1, 1, 2, 5.0]), np.linspace(0, 1, 6)  # a tie: the middle of its levels, as apply_scaler
    x = np.array([-1, 0, 0.5, 1, 1.5, 2, 3, 5, 6])
    middle = 0.5 * (np.interp(x, xp, fp) - np.interp(-x, -xp[::-1], -fp[::-1]))
    np.testing.assert_allclose(run(lambda b, x: b.interp(x, xp.tolist(), fp.tolist(), True), x), middle, atol=1e-15)


def test_export_command_writes_model_and_sidecar(finished_runs, tmp_path):
    out = tmp_path / "deploy" / "pets.onnx"
    result = run_cli("export", finished_runs["classification"], "--output", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert [i["name"] for i in sidecar["inputs"]] == ["x1", "x2", "colour"]
    assert [i["type"] for i in sidecar["inputs"]] == ["float64", "float64", "string"]
    assert sidecar["targets"] == [{"name": "species", "task": "classification", "classes": ["bird", "cat", "dog"]}]
    assert sidecar["outputs"] == ["species_pred", "species_proba_bird", "species_proba_cat", "species_proba_dog"]
    bad = run_cli("export", finished_runs["classification"], "--format", "torchscript")
    assert bad.returncode == 2 and "Error: --format must be one of onnx, got 'torchscript'" in bad.stderr


def test_readme_snippet_predicts_a_csv_with_onnxruntime_and_no_torch(finished_runs, tmp_path):
    import subprocess
    import sys

    from conftest import REPO, make_regression_frame
    from dlrun.export.run_export import export_run
    from dlrun.inference.batch import predict

    readme = (REPO / "README.md").read_text()
    snippet = readme.split("<!-- readme-onnx-snippet -->")[1].split("```python")[1].split("```")[0]
    export_run(finished_runs["regression"], tmp_path / "model.onnx")
    rows = make_regression_frame(45, seed=5).drop(columns="price")  # with empty sizes and cities
    rows.loc[2, "city"] = "Brest"  # never seen
    rows.to_csv(tmp_path / "new.csv", index=False)
    # None in sys.modules makes `import torch` (and `import dlrun`) raise ImportError in the snippet's process
    blocked = "import sys\nsys.modules.update(torch=None, dlrun=None)\n"
    result = subprocess.run([sys.executable, "-c", blocked + snippet], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    predict(finished_runs["regression"], tmp_path / "new.csv", tmp_path / "by_dlrun.csv")
    by_onnx, by_dlrun = pd.read_csv(tmp_path / "new_predictions.csv"), pd.read_csv(tmp_path / "by_dlrun.csv")
    assert list(by_onnx.columns) == list(by_dlrun.columns) == ["size", "rooms", "city", "price_pred"]
    assert json.loads((tmp_path / "model.json").read_text())["targets"] == [{"name": "price", "task": "regression", "unit": "euros"}]
    np.testing.assert_allclose(by_onnx["price_pred"], by_dlrun["price_pred"], rtol=1e-5)


# Re-saves a checkpoint with every tensor tagged as stored on cuda:0, as torch.save writes a GPU-trained one.
AS_IF_FROM_A_GPU = """
import sys, torch
from torch.serialization import register_package
checkpoint = torch.load(sys.argv[1], weights_only=True)
register_package(0, lambda storage: "cuda:0", lambda storage, location: None)
torch.save(checkpoint, sys.argv[1])
"""


def test_a_gpu_trained_run_exports_and_serves_on_a_cpu_only_machine(finished_runs, tmp_path):
    import shutil
    import subprocess
    import sys

    import torch

    from dlrun.export.run_export import export_run

    if torch.cuda.is_available():
        pytest.skip("a machine with a GPU loads the checkpoint anyway")
    run_dir = tmp_path / "gpu_run"
    shutil.copytree(finished_runs["regression"], run_dir)
    best = run_dir / "checkpoints" / "best.pt"
    subprocess.run([sys.executable, "-c", AS_IF_FROM_A_GPU, str(best)], check=True, timeout=120)
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(best, weights_only=True)  # what a loader without map_location meets
    assert export_run(run_dir, tmp_path / "model.onnx").model.is_file()
    pytest.importorskip("fastapi")
    from dlrun.serve.app import create_app

    assert any(route.path == "/predict" for route in create_app(run_dir).routes)

"""Streaming a table larger than memory (issue 19 item 2): the hash split, the preprocessing fitted in passes, the
shuffle buffer, and `dlrun train` with data.in_memory: false end to end, killed and resumed."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import run_cli_many, write_config
from dlrun.config.load import validate_config
from dlrun.config.schema import DataConfig
from dlrun.data.load import builtin_path, load_dataset, read_csv
from dlrun.data.preprocess import Preprocessor
from dlrun.data.stream import hash_split, streams
from dlrun.data.stream_fit import fit_streamed
from dlrun.data.tensors import Split
from dlrun.inference.batch import evaluate
from dlrun.training.shuffle import ShuffleBuffer
from fault_helpers import run_dlrun


def test_hash_split_is_stable_across_chunks_and_has_the_configured_fractions():
    positions = np.arange(200_000)
    whole = hash_split(positions, seed=3, val=0.15, test=0.25)
    halves = np.concatenate([hash_split(positions[:70_001], 3, 0.15, 0.25), hash_split(positions[70_001:], 3, 0.15, 0.25)])
    assert (whole == halves).all()  # a row's split depends on its position and the seed only, not on the chunking
    for name, fraction in (("val", 0.15), ("test", 0.25), ("train", 0.6)):
        sd = np.sqrt(fraction * (1 - fraction) / len(positions))
        assert abs((whole == name).mean() - fraction) < 4 * sd, name
    other = hash_split(positions, seed=4, val=0.15, test=0.25)
    assert 0.3 < (other != whole).mean() < 0.7  # another seed, another split


def _salary_with_split(tmp_path, n_copies: int = 1):
    """salary.csv with the in-memory run's own split as a column (repeated n_copies times), so both modes fit and score
    the same rows."""
    cfg = DataConfig(dataset="salary")
    dataset = load_dataset(cfg, seed=0)
    table = read_csv(builtin_path("salary.csv"), keep_tokens=True).iloc[: len(dataset.frame)].copy()
    assert len(table) == len(dataset.frame)  # salary has no row without a target: rows line up
    table["part"] = dataset.split
    path = tmp_path / "salary_split.csv"
    pd.concat([table] * n_copies, ignore_index=True).to_csv(path, index=False)
    return path, dataset


def test_streamed_preprocessing_equals_the_in_memory_fit(tmp_path):
    """Exact statistics (means, spreads, missing counts, categories, target moments) agree to float rounding; the
    sample holds every row here, so the medians agree exactly too."""
    path, dataset = _salary_with_split(tmp_path)
    cfg = validate_config({"data": {"path": str(path), "target": "wages", "in_memory": False, "split": {"column": "part"},
                                    "stream": {"chunk_rows": 1000, "sample_rows": 10_000}}})
    memory = load_dataset(cfg.data, 0)
    expected = Preprocessor(cfg.preprocess, memory.features, memory.targets, memory.tasks, memory.columns).fit(memory.part("train"))
    streamed = fit_streamed(cfg)
    assert streamed.counts.rows == {name: int((memory.split == name).sum()) for name in ("train", "val", "test")}
    got, want = streamed.prep.to_dict(), expected.to_dict()
    assert got["categorical"] == want["categorical"] and got["feature_names"] == want["feature_names"]
    for column, state in want["numeric"].items():
        for key, value in state.items():
            assert got["numeric"][column][key] == pytest.approx(value, rel=1e-9), (column, key)
    for key in ("mean", "std"):
        assert got["target_state"]["wages"][key] == pytest.approx(want["target_state"]["wages"][key], rel=1e-9)


def test_auto_keeps_small_tables_in_memory_and_streams_over_the_budget(tmp_path):
    path, _ = _salary_with_split(tmp_path)
    assert not streams(DataConfig(path=str(path), target="wages"))
    assert streams(DataConfig(path=str(path), target="wages", memory_budget=1e-6))  # about 1 KiB
    assert not streams(DataConfig(path=str(path), target="wages", memory_budget=1e-6, in_memory=True))


def _chunks(n_rows: int, size: int):
    X = torch.arange(n_rows, dtype=torch.float32)[:, None]
    return [Split(X[s : s + size], {"y": X[s : s + size, 0].long()}) for s in range(0, n_rows, size)]


def test_shuffle_buffer_is_seeded_and_serves_every_row_once():
    def order(seed: int) -> list[int]:
        buffer = ShuffleBuffer(capacity=300, batch_size=32, generator=torch.Generator().manual_seed(seed))
        batches = list(buffer.batches(_chunks(1000, 100)))
        assert all(len(b) == 32 for b in batches[:-1]) and all(torch.equal(b.X[:, 0].long(), b.y["y"]) for b in batches)
        return torch.cat([b.y["y"] for b in batches]).tolist()

    first = order(0)
    assert sorted(first) == list(range(1000)) and first == order(0) and first != order(1)
    # rows leave the buffer well away from their chunk: the first batch already mixes several chunks
    assert len({row // 100 for row in first[:32]}) > 1
    in_order = list(ShuffleBuffer(300, 32, None).batches(_chunks(1000, 100)))
    assert torch.cat([b.y["y"] for b in in_order]).tolist() == list(range(1000))  # data.shuffle: false


@pytest.mark.slow
def test_streamed_training_matches_in_memory_and_resumes_after_a_kill(tmp_path):
    """salary with the in-memory split as a split column: the streamed run's test metrics are within 5% (MAE, RMSE)
    and 0.05 (r2) of the in-memory run's (the shuffle order differs); killed after epoch 2 and resumed, the streamed
    run ends with exactly the straight streamed run's metrics."""
    path, _ = _salary_with_split(tmp_path)
    data = {"path": str(path), "target": "wages", "split": {"column": "part"}}
    stream = {"chunk_rows": 1000, "shuffle_buffer": 1500}
    memory = write_config(tmp_path / "memory.yaml", {**data, "in_memory": True}, name="memory", train={"epochs": 4})
    streamed = write_config(tmp_path / "stream.yaml", {**data, "in_memory": False, "stream": stream}, name="stream",
                            train={"epochs": 4}, tracking={"tensorboard": True})
    results = run_cli_many({kind: (["train", config, "--runs-dir", tmp_path / kind], tmp_path)
                            for kind, config in (("memory", memory), ("stream", streamed))})
    killed = run_dlrun(["train", streamed, "--runs-dir", tmp_path / "killed"], tmp_path / "logs" / "killed",
                       env={"DLRUN_TEST_KILL_AT": "last.pt:after:2"})
    for kind, result in results.items():
        assert result.returncode == 0, (kind, result.stderr[-2000:])
    assert killed.returncode == -9, killed.stderr[-2000:]
    (killed_dir,) = (tmp_path / "killed").iterdir()
    resumed = run_dlrun(["train", "--resume", killed_dir], tmp_path / "logs" / "resumed")
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    metrics = {kind: json.loads((next((tmp_path / kind).iterdir()) / "metrics.json").read_text())
               for kind in ("memory", "stream")}
    for name in ("mae", "rmse"):
        assert metrics["stream"]["test"]["wages"][name] == pytest.approx(metrics["memory"]["test"]["wages"][name], rel=0.05)
    assert abs(metrics["stream"]["test"]["wages"]["r2"] - metrics["memory"]["test"]["wages"]["r2"]) < 0.05
    stream_dir = next((tmp_path / "stream").iterdir())
    record = json.loads((stream_dir / "run.json").read_text())
    assert record["data"]["in_memory"] is False and "in_memory: false" in (stream_dir / "config.yaml").read_text()
    assert len(pd.read_csv(stream_dir / "predictions.csv")) == record["data"]["rows"]["test"]
    evaluation = evaluate(stream_dir, output=tmp_path / "eval.json")  # the run's test split, streamed again
    for name, value in metrics["stream"]["test"]["wages"].items():
        assert evaluation.metrics["wages"][name] == pytest.approx(value, rel=1e-6)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(stream_dir / "tensorboard"))  # a streamed run is tracked like any run
    events.Reload()
    assert [scalar.step for scalar in events.Scalars("train_loss")] == [1, 2, 3, 4]

    assert json.loads((killed_dir / "metrics.json").read_text()) == metrics["stream"]
    assert json.loads((killed_dir / "run.json").read_text())["resumed"][0]["after_epoch"] == 2
    checkpoint = torch.load(killed_dir / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["stream"] == {"epoch": 4, "train_rows_read": 4 * record["data"]["rows"]["train"],
                                    "rows_per_epoch": record["data"]["rows"]["train"]}

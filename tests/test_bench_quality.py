"""bench/quality.py's bookkeeping: resuming from its results file, merging runs, models past their time cap."""

from __future__ import annotations

import json
import signal
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
import baselines  # noqa: E402  (bench/ holds scripts beside the package, not part of it)
import quality  # noqa: E402
from tables import TABLES  # noqa: E402


def _record(table: str, seed: int, scores: dict[str, float], unfinished=(), task="regression", half="tuning") -> dict:
    metric = quality.PRIMARY[task]
    return {"table": table, "half": half, "source": "test", "seed": seed, "target": "y", "task": task,
            "rows": {"train": 10, "val": 2, "test": 3}, "scores": {m: {metric: v} for m, v in scores.items()},
            "seconds": {m: 1.0 for m in [*scores, *unfinished]}, "unfinished": list(unfinished)}


def test_a_later_run_replaces_only_the_models_it_measured():
    old = _record("a", 0, {"dlrun": 0.5, "CatBoost": 0.6}, unfinished=["TabM-D"])
    new = _record("a", 0, {"dlrun": 0.7, "TabM-D": 0.8})
    merged = quality.merge_record(old, new)
    assert {m: s["r2"] for m, s in merged["scores"].items()} == {"dlrun": 0.7, "CatBoost": 0.6, "TabM-D": 0.8}
    assert merged["unfinished"] == []  # TabM-D finished this time
    timed_out = quality.merge_record(merged, _record("a", 0, {}, unfinished=["TabM-D"]))
    assert "TabM-D" not in timed_out["scores"] and timed_out["unfinished"] == ["TabM-D"]  # the later run wins
    records = quality.merge_records([old, _record("b", 0, {"dlrun": 0.1})], [new])
    assert [(r["table"], r["scores"]["dlrun"]["r2"]) for r in records] == [("a", 0.7), ("b", 0.1)]


def test_a_different_split_for_the_same_seed_is_refused():
    changed = _record("a", 0, {"dlrun": 0.7})
    changed["rows"] = {"train": 11, "val": 2, "test": 2}
    with pytest.raises(SystemExit, match="differs"):
        quality.merge_record(_record("a", 0, {"dlrun": 0.5}), changed)


def test_an_unfinished_model_has_no_rank_and_counts_only_where_it_finished():
    records = [_record("a", s, {"dlrun": 0.5, "CatBoost": 0.4}, unfinished=["TabM-D"]) for s in (0, 1)]
    records += [_record("b", 0, {"dlrun": 0.5, "CatBoost": 0.6, "TabM-D": 0.9}),
                _record("b", 1, {"dlrun": 0.5, "CatBoost": 0.6}, unfinished=["TabM-D"])]
    models, rows, extra = quality.half_summary(records)
    *tables, totals = rows
    assert models == ["dlrun", "CatBoost", "TabM-D"]
    assert quality._cell(tables[0], "TabM-D") == "unfinished" and "TabM-D" not in tables[0]["rank"]
    _, (not_run, _, _totals), _ = quality.half_summary([_record("c", 0, {"dlrun": 0.5}), _record("d", 0, {"dlrun": 0.5, "HGB": 0.1})])
    assert quality._cell(not_run, "HGB") == "-"  # never fitted there: not the same as past the cap
    assert quality._cell(tables[1], "TabM-D").endswith("1/2 seeds") and tables[1]["rank"]["TabM-D"] == 1
    assert totals["mean_rank"]["TabM-D"] == 1.0 and totals["mean_rank"]["dlrun"] == 2.0
    (line,) = extra["record"]
    assert "CatBoost 1/0/1" in line and "TabM-D 0/0/1 (on the 1 tables both have)" in line
    # paired on the seeds both finished: dlrun's seed 0 (0.9) against TabM-D's seed 0 (0.8), not its mean (0.5)
    records = [_record("e", 0, {"dlrun": 0.9, "TabM-D": 0.8}), _record("e", 1, {"dlrun": 0.1}, unfinished=["TabM-D"])]
    assert "TabM-D 1/0/0" in quality.half_summary(records)[2]["record"][0]


def test_the_results_file_resumes_and_is_replaced_in_one_step(tmp_path):
    path = tmp_path / "results.json"
    quality.write_json(path, [_record("a", 0, {"dlrun": 0.5})])
    quality.write_json(path, [_record("a", 0, {"dlrun": 0.6})])
    assert json.loads(path.read_text())[0]["scores"]["dlrun"]["r2"] == 0.6
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no partial file left behind


def test_a_fit_past_its_time_limit_raises_and_the_alarm_is_cleared():
    with pytest.raises(baselines.FitTimeout):
        with baselines.time_limit(600):
            assert signal.getitimer(signal.ITIMER_REAL)[0] > 0  # armed
            signal.raise_signal(signal.SIGALRM)  # the alarm going off, without waiting for it
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    with baselines.time_limit(5):
        pass
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_tables_have_unique_names_two_halves_and_twenty_real_ones():
    names = [t.name for t in TABLES]
    assert len(names) == len(set(names))
    assert {t.half for t in TABLES} == {"tuning", "held_out"}
    assert sum(t.source != "built-in (generated)" for t in TABLES) >= 20

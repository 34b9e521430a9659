"""The models dlrun is compared with, each at its library's defaults, fitted on the train + val rows of dlrun's split
(dlrun uses val only to pick its best epoch; the baselines hold out their own validation rows where they use any).

  CatBoost   CatBoostClassifier / Regressor defaults (1000 trees), text columns as native categorical features.
  RealMLP    pytabkit RealMLP_TD (Holzmueller et al. 2024, "Better by Default"), its tuned defaults.
  TabM-D     pytabkit TabM_D (Gorishniy et al. 2025), its tuned defaults (slow on CPU: only when asked for, and
             capped in wall time per fit by bench/quality.py: a fit past the cap counts as not finished).
  HGB        scikit-learn HistGradientBoosting defaults.
  MLP        scikit-learn MLPClassifier / MLPRegressor (64, 32, 16), early_stopping=True.
  Linear     scikit-learn LogisticRegression / RidgeCV.

scikit-learn's models share one pipeline fitted on their training rows (numeric: median imputation and standard
scaling; text: an explicit `missing` category and one-hot, unseen categories ignored). CatBoost and pytabkit get the
raw numbers (pytabkit's with median imputation: it takes no missing numbers) and text as categories.
"""

from __future__ import annotations

import signal
import warnings
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

BASELINES = ("CatBoost", "RealMLP", "TabM-D", "HGB", "MLP", "Linear")


class FitTimeout(Exception):
    """A fit ran past its time limit; the bench records the model as not finished on that table-seed."""


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise FitTimeout inside the block after `seconds` of wall time (SIGALRM: main thread, Unix only)."""
    if not seconds:
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise FitTimeout(f"fit ran past {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def numeric_columns(frame: pd.DataFrame, features: list[str]) -> list[str]:
    return [c for c in features if pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])]


def as_model_input(frame: pd.DataFrame, features: list[str], numeric: list[str], fill: dict[str, float] | None) -> pd.DataFrame:
    """Numbers as float (imputed with `fill` when given); text as strings with `missing` for gaps."""
    X = frame[features].copy()
    for column in features:
        if column in numeric:
            X[column] = X[column].astype(float)
            if fill is not None:
                X[column] = X[column].fillna(fill[column])
        else:
            X[column] = X[column].astype(object).where(X[column].notna(), "missing").astype(str)
    return X


def _sklearn_prep(numeric: list[str], text: list[str]) -> ColumnTransformer:
    return ColumnTransformer([
        ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
        ("text", OneHotEncoder(handle_unknown="ignore", sparse_output=False), text),
    ])


def fit_predict(name: str, task: str, train: pd.DataFrame, test: pd.DataFrame, features: list[str], target: str,
                seed: int, limit_s: float | None = None) -> np.ndarray:
    """Fit baseline `name` on `train` and return its predictions for `test` (class names or numbers).

    With `limit_s`, a fit still running after that many seconds raises FitTimeout.
    """
    numeric = numeric_columns(train, features)
    text = [c for c in features if c not in numeric]
    classify = task == "classification"
    y = train[target].astype(str) if classify else train[target].astype(float)
    if name in ("CatBoost", "RealMLP", "TabM-D"):
        fill = {c: float(train[c].median()) if train[c].notna().any() else 0.0 for c in numeric} if name != "CatBoost" else None
        X_train, X_test = (as_model_input(f, features, numeric, fill) for f in (train, test))
        if name == "CatBoost":
            from catboost import CatBoostClassifier, CatBoostRegressor

            model = (CatBoostClassifier if classify else CatBoostRegressor)(
                random_seed=seed, verbose=False, thread_count=1, cat_features=text, allow_writing_files=False)
        else:
            import pytabkit

            for column in text:
                X_train[column] = X_train[column].astype("category")
                X_test[column] = pd.Categorical(X_test[column], categories=X_train[column].cat.categories)
            kind = "RealMLP_TD" if name == "RealMLP" else "TabM_D"
            model = getattr(pytabkit, f"{kind}_{'Classifier' if classify else 'Regressor'}")(
                device="cpu", random_state=seed, n_threads=1, verbosity=0)
        with warnings.catch_warnings(), time_limit(limit_s):
            warnings.simplefilter("ignore")
            model.fit(X_train, y)
            return np.asarray(model.predict(X_test)).reshape(-1)
    models: dict[str, Any] = {
        "HGB": HistGradientBoostingClassifier(random_state=seed) if classify else HistGradientBoostingRegressor(random_state=seed),
        "MLP": (MLPClassifier if classify else MLPRegressor)(hidden_layer_sizes=(64, 32, 16), early_stopping=True, random_state=seed),
        "Linear": LogisticRegression(max_iter=2000) if classify else RidgeCV(),
    }
    model = Pipeline([("prep", _sklearn_prep(numeric, text)), ("model", models[name])])
    if not classify and name in ("MLP", "Linear"):
        model = TransformedTargetRegressor(model, transformer=StandardScaler())
    X_train, X_test = (as_model_input(f, features, numeric, None) for f in (train, test))
    with warnings.catch_warnings(), time_limit(limit_s):
        warnings.simplefilter("ignore")  # ConvergenceWarning at scikit-learn's default max_iter
        model.fit(X_train, y)
    return np.asarray(model.predict(X_test)).reshape(-1)

"""The study a sweep's workers share: its storage (SQLite in the sweep directory, or PostgreSQL), the trial budget,
and what happens to the trial of a worker that died.

Every worker, on this machine or another, runs the same loop against the storage; nothing is coordinated by a parent
process, so a study can be joined, killed and continued at any time.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sqlite3
import threading
import warnings
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from dlrun.core.errors import ConfigError, RunError

# A worker records a heartbeat every HEARTBEAT_S while it runs a trial; a trial silent for STALE_AFTER_S is taken for
# lost (its worker's machine died) and re-queued. A worker that dies on this machine is noticed at once by its pid.
HEARTBEAT_S = 10
STALE_AFTER_S = 60
# Seconds SQLite waits for another worker's write to finish before "database is locked".
SQLITE_BUSY_TIMEOUT_S = 120
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)



@contextmanager
def optuna_logs_quiet() -> Iterator[None]:
    """Keep optuna's logger to warnings while a sweep runs (each trial is reported by dlrun, not by optuna's INFO
    lines), and give it back as it was: importing dlrun changes no other library's settings. Also a decorator."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


@contextmanager
def optuna_quiet() -> Iterator[None]:
    """Silence what optuna says about the features dlrun relies on: heartbeats and re-queueing are "experimental"
    (and stable since optuna 2.9), and trials run with ask/tell, so the trial budget is claimed under a lock."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
        yield


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def open_storage(url: str, on_lost: Callable[[optuna.Study, FrozenTrial], None] | None = None) -> RDBStorage:
    """An RDBStorage with heartbeats; an unreachable server or a bad URL is a ConfigError before any trial starts."""
    scheme = url.split(":", 1)[0]
    if not scheme.startswith(("sqlite", "postgresql")):
        raise ConfigError(f"--storage: {display_url(url)!r} is not supported; use postgresql://USER@HOST/DB (or leave it out "
                          "for the SQLite file in the sweep directory)")
    engine_kwargs: dict[str, Any] = {}
    if scheme == "sqlite":
        path = Path(url.removeprefix("sqlite:///"))
        # WAL lets workers read while one writes; the setting lives in the file, so setting it once is enough.
        with sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
        engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    else:
        engine_kwargs = {"connect_args": {"connect_timeout": 10}}
    try:
        with optuna_quiet():
            return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S,
                              grace_period=STALE_AFTER_S, heartbeat_stale_trial_callback=on_lost)
    except ImportError as exc:
        raise ConfigError(f"--storage {display_url(url)}: the database driver is not installed ({exc})") from None
    except Exception as exc:  # sqlalchemy's OperationalError, ArgumentError...: all mean "cannot use this storage"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--storage {display_url(url)}: cannot open the study storage ({reason})") from None


def display_url(url: str) -> str:
    """The URL with any password hidden, for messages and sweep.json."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def open_study(storage: RDBStorage, name: str, direction: str, fingerprint: dict[str, Any]) -> optuna.Study:
    """Create the study or join it; joining one started from a different config is a ConfigError."""
    with optuna_logs_quiet():
        study = optuna.create_study(storage=storage, study_name=name, direction=direction, load_if_exists=True)
    started_with = study.user_attrs.get("config")
    if started_with is None:
        study.set_user_attr("config", fingerprint)
    elif started_with != fingerprint:
        changed = sorted(_differences(started_with, fingerprint))
        raise ConfigError(f"study {name!r} was started from a different config (changed: {', '.join(changed)}); run it "
                          "with the same config to continue it, or give --study NEW_NAME for a new study")
    return study


def _differences(a: Any, b: Any, prefix: str = "") -> set[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return {key for k in a.keys() | b.keys() for key in _differences(a.get(k), b.get(k), f"{prefix}{k}.")}
    return set() if a == b else {prefix.rstrip(".")}


def counted(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that use up the budget: every trial except those lost with a worker and re-queued as a new trial."""
    requeued = {retry_of(t) for t in trials} - {None}
    return [t for t in trials if t.number not in requeued]


def retry_of(trial: FrozenTrial) -> int | None:
    """The number of the lost trial this one re-runs, or None."""
    with optuna_quiet():
        return RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)


def next_step(trials: list[FrozenTrial], budget: int) -> str:
    """"run" a trial (a new one, or a re-queued one), "wait" for running ones (they may yet be lost), or "done"."""
    if any(t.state == TrialState.WAITING for t in trials) or len(counted(trials)) < budget:
        return "run"
    return "wait" if any(t.state == TrialState.RUNNING for t in trials) else "done"


def worker_id() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def lose_trial(study: optuna.Study, trial: FrozenTrial, mark_run: Callable[[FrozenTrial, str], None], why: str) -> None:
    """A trial whose worker is gone: its run directory says so, and a copy with the same parameters is queued."""
    mark_run(trial, why)
    with optuna_quiet():
        RetryHeartbeatStaleTrialCallback()(study, trial)


def reap_dead_workers(study: optuna.Study, storage: RDBStorage, mark_run: Callable[[FrozenTrial, str], None]) -> list[int]:
    """Fail and re-queue the running trials of workers on this machine that no longer exist; returns their numbers.

    A worker on another machine cannot be checked this way; its trial goes stale instead (see fail_stale_trials)."""
    here = socket.gethostname()
    lost = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker") or {}
        if worker.get("host") != here or _alive(worker.get("pid")):
            continue
        try:
            if not storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:  # another worker reaped it first
            continue
        lose_trial(study, storage.get_trial(trial._trial_id), mark_run, f"its worker (pid {worker.get('pid')}) died")
        lost.append(trial.number)
    return lost


def _alive(pid: int | None) -> bool:
    if pid is None:
        return True  # not ours to judge: the heartbeat decides
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def claim_lock(storage: RDBStorage, url: str, study_name: str) -> Iterator[None]:
    """One worker at a time counts the trials and asks for the next, so --trials N runs exactly N trials.

    SQLite: an flock on a file beside the database (one machine). PostgreSQL: an advisory lock (any number of machines).
    """
    if url.startswith("sqlite"):
        with open(f"{url.removeprefix('sqlite:///')}.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    from sqlalchemy import text

    key = zlib.crc32(f"dlrun-sweep:{study_name}".encode())
    with storage.engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})


@contextmanager
def heartbeat(storage: RDBStorage, trial_id: int) -> Iterator[None]:
    """Record the trial's heartbeat every HEARTBEAT_S seconds from a thread while the block runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                storage.record_heartbeat(trial_id)
            except Exception:  # a storage hiccup must not kill training; a missed beat only risks a late re-queue
                pass

    storage.record_heartbeat(trial_id)
    thread = threading.Thread(target=beat, name="dlrun-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def require_study(storage: RDBStorage, name: str) -> optuna.Study:
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise RunError(f"no study named {name!r} in {display_url(storage.url)}") from None

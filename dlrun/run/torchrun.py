"""Training one run on several processes or machines with torchrun (how they split the work: training/distributed.py).

    torchrun --nproc-per-node 2 -m dlrun train configs/salary.yaml    # 2 processes on this machine
    dlrun train configs/salary.yaml --nproc 2                          # the same, torchrun started for you

Every process runs `dlrun train`; rank 0 alone creates and writes the run directory and prints, the others train
silently beside it and write nothing. Standard library only at import: the CLI imports this before it checks the config.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from dlrun.core.errors import ConfigError, DlrunError

T = TypeVar("T")

# 127.0.0.1:0: the rendezvous store listens on loopback only, on a port the system picks free.
LOCAL_RENDEZVOUS = "127.0.0.1:0"
REPORT_GRACE_S = 60  # see rank_zero_reports


def rank_zero_reports(call: Callable[[], T]) -> T:
    """`call()`; under torchrun, a process other than rank 0 that fails on a user error (DlrunError) waits up to
    REPORT_GRACE_S before it raises. Only rank 0 prints, and torchrun stops every process as soon as one has exited:
    rank 0 must not be stopped before it has said what is wrong. A bad config or table fails every process alike,
    so rank 0 exits first and torchrun ends the wait at once (SIGTERM); the limit only matters when one process
    alone failed (its GPU ran out of memory, say)."""
    try:
        return call()
    except DlrunError:
        if os.environ.get("RANK", "0") not in ("", "0") and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            time.sleep(REPORT_GRACE_S)
        raise


def silence_other_ranks() -> None:
    """Under torchrun every process but rank 0 sends its stdout and stderr to /dev/null: a run prints once (its
    errors too: a bad config fails every process the same way). torchrun's summary still names a failed process."""
    if os.environ.get("RANK", "0") in ("", "0"):
        return
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)


def train_in_processes(nproc: int, config: Path | None, overrides: Sequence[str], runs_dir: Path, device: str | None,
                       resume: Path | None) -> int:
    """`dlrun train ... --nproc N`: the same command on N processes of this machine, started by torchrun's own
    launcher (torch.distributed.run), rendezvous on loopback. Returns the exit status: 0, or the first failed
    process's (128 + N for signal N); rank 0 has already printed what went wrong."""
    if nproc < 1:
        raise ConfigError(f"--nproc: {nproc} processes; give 1 or more")
    args = ["train", *([str(config)] if config is not None else []), *[part for o in overrides for part in ("--set", o)],
            "--runs-dir", str(runs_dir), *(["--device", device] if device else []),
            *(["--resume", str(resume)] if resume is not None else [])]
    return launch(nproc, ["-m", "dlrun", *args])


def launch(nproc: int, command: list[str]) -> int:
    """Run `python COMMAND` on `nproc` local processes under torchrun's elastic agent; the exit status."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import elastic_launch
    from torch.distributed.run import config_from_args, parse_args

    # One thread per process unless the user says otherwise (what torchrun does, without its warning banner); the
    # processes inherit this environment.
    threads_set = "OMP_NUM_THREADS" in os.environ
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    disabled = logging.root.manager.disable
    logging.disable(logging.CRITICAL)  # the agent logs each failure with a traceback; rank 0 has said what failed
    try:
        config, entrypoint, args = config_from_args(parse_args([
            "--nnodes", "1", "--nproc-per-node", str(nproc), "--max-restarts", "0", "--rdzv-backend", "c10d",
            "--rdzv-endpoint", LOCAL_RENDEZVOUS, "--rdzv-id", str(uuid.uuid4()), *command]))
        elastic_launch(config, entrypoint)(*args)
    except ChildFailedError as exc:
        # The first process to fail with an exit status (not a signal: torchrun then stopped the others) says why.
        failures = sorted(exc.failures.values(), key=lambda failure: failure.timestamp)
        code = next((f.exitcode for f in failures if f.exitcode > 0), failures[0].exitcode)
        return code if code >= 0 else 128 - code  # killed by signal S: 128 + S, as a shell reports it
    except SignalException:  # Ctrl-C or SIGTERM reached the launcher; the processes were told too
        return 130
    finally:
        logging.disable(disabled)
        if not threads_set:
            del os.environ["OMP_NUM_THREADS"]
    return 0

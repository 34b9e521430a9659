"""Run `dlrun` commands in fresh processes forked from a server that has already imported dlrun and torch.

A `python -m dlrun` process spends seconds importing torch before its first epoch; the fault-injection suite runs two
processes per case, so it forks them from a multiprocessing forkserver that imported the CLI once (and ran no torch
op: forking a process whose thread pools are started is unsafe). Each child is a new process running the real CLI
(`dlrun.cli.main`) with its own environment, exit status and output files; a SIGKILL ends it as it would end
`python -m dlrun`.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from dataclasses import dataclass
from pathlib import Path

PRELOAD = ["fault_helpers", "dlrun.cli.commands", "dlrun.run.runner", "dlrun.training.callbacks", "dlrun.config.schema"]


@dataclass(frozen=True)
class Result:
    returncode: int  # -9 when SIGKILLed, as subprocess reports it
    stdout: str
    stderr: str


def _main(args: list[str], env: dict[str, str], out: str, err: str) -> None:
    """The child: point stdout/stderr at files, set the environment, run the CLI; its exit status is the CLI's."""
    for fd, path in ((1, out), (2, err)):
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(handle, fd)
        os.close(handle)
    os.environ.update(env)
    sys.argv = ["dlrun", *args]
    from dlrun.cli import main

    main()


def context() -> multiprocessing.context.BaseContext:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)  # only acts if this session's forkserver is not running yet
    return ctx


def run_dlrun(args: list, log_dir: Path, env: dict[str, str] | None = None, timeout: float = 120) -> Result:
    """`dlrun ARGS` in a forked process; stdout/stderr are kept in log_dir."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out, err = log_dir / "stdout", log_dir / "stderr"
    process = context().Process(target=_main, args=([str(a) for a in args], {"COLUMNS": "200", **(env or {})}, str(out), str(err)))
    process.start()
    process.join(timeout)
    if process.exitcode is None:
        process.kill()
        process.join()
        raise TimeoutError(f"dlrun {' '.join(map(str, args))} did not finish in {timeout} s")
    return Result(process.exitcode, out.read_text(), err.read_text())

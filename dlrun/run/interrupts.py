"""What a run stopped by Ctrl-C or SIGTERM tells its caller. Standard library only: the CLI reads it on any Ctrl-C,
and a light command (`dlrun runs`) must not import torch to exit.

Runs stop after the epoch in progress, not the batch (run/stop_on_signal.py): last.pt is the state at an epoch's end
(shuffle order, schedule, history); a run stopped mid-epoch could only resume by repeating that epoch's first batches,
and would not end where a straight run ends. A second Ctrl-C stops at once (the run resumes from the epoch before).
"""

from __future__ import annotations

import shlex
from pathlib import Path


class RunInterrupted(KeyboardInterrupt):
    """The run stopped on a signal after `epoch` with its checkpoints saved. A KeyboardInterrupt, so every caller
    that already treats Ctrl-C as "stop now" (a sweep, the CLI) treats this the same way."""

    def __init__(self, run_dir: Path, epoch: int | None, signal_name: str):
        # epoch None: a second signal stopped it at once, or one came after training, while results were written
        super().__init__(f"{signal_name} after epoch {epoch}" if epoch is not None else f"{signal_name} during training")
        self.run_dir, self.epoch, self.signal_name = Path(run_dir), epoch, signal_name


def resume_command(run_dir: Path) -> str:
    """The exact command that continues `run_dir`, quoted for a POSIX shell."""
    return f"dlrun train --resume {shlex.quote(str(run_dir))}"

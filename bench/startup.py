"""Start-up of `dlrun train configs/salary.yaml`: from process start to the training loop, against `import torch`.

    python bench/startup.py [--repeats N]

Start-up is everything a run pays before its first epoch (imports, config, data, preprocessing, model); issue 12
(item 6) holds it to at most STARTUP_LIMIT times `python -c "import torch"`, the floor any dlrun process pays. The
child process reads time.perf_counter (CLOCK_MONOTONIC, one clock for every process on Linux) when fit is called,
through a wrapper this script installs (STARTUP_PROBE): dlrun itself carries no timing hook. bench/speed.py prints
the same line after its tables.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STARTUP_LIMIT = 1.5  # start-up of `dlrun train configs/salary.yaml` / `python -c "import torch"` (issue 12, item 6)
# Runs the `dlrun` command line given as arguments, printing on stderr the monotonic clock when the training loop
# starts. fit is wrapped before dlrun.run.runner imports it; the imports it pulls in are the command's own.
STARTUP_PROBE = """
import sys, time
import dlrun.training.loop as loop
untimed_fit = loop.fit
def fit(*args, **kwargs):
    print(f"fit-entered-at {time.perf_counter()!r}", file=sys.stderr, flush=True)
    return untimed_fit(*args, **kwargs)
loop.fit = fit
from dlrun.cli import main
sys.argv = ["dlrun", *sys.argv[1:]]
main()
"""


def startup_seconds(config: str, runs_dir: Path) -> float:
    """Seconds from spawning `dlrun train CONFIG` to its training loop starting."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", STARTUP_PROBE, "train", config, "--runs-dir", str(runs_dir)],
                          cwd=REPO, capture_output=True, text=True, check=True)
    marks = [line.split()[1] for line in done.stderr.splitlines() if line.startswith("fit-entered-at ")]
    if len(marks) != 1:
        raise RuntimeError(f"the start-up probe saw {len(marks)} calls of fit (has dlrun.run.runner stopped calling "
                           f"dlrun.training.loop.fit?); stderr:\n{done.stderr[-2000:]}")
    return float(marks[0]) - start


def startup_line(repeats: int) -> str:
    """Start-up against the torch import, each repeat one of each back to back so both see the same load; the
    ratio is the median of the repeats' ratios (after one untimed pair that warms the file cache)."""
    pairs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats + 1):
            startup = startup_seconds("configs/salary.yaml", Path(tmp) / str(i))
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import torch"], check=True)
            pairs.append((startup, time.perf_counter() - start))
    pairs = pairs[1:]
    ratio = statistics.median(startup / torch_seconds for startup, torch_seconds in pairs)
    startup, torch_seconds = (statistics.median(column) for column in zip(*pairs))
    return (f"start-up of `dlrun train configs/salary.yaml` (process start to the training loop) {startup:.3f}s vs "
            f"`python -c 'import torch'` {torch_seconds:.3f}s (medians of {repeats} pairs): {ratio:.2f}x "
            f"(target: at most {STARTUP_LIMIT}x) {'ok' if ratio <= STARTUP_LIMIT else 'OVER'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed pairs of runs (default 5)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    print(startup_line(args.repeats))


if __name__ == "__main__":
    main()

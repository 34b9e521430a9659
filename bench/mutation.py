"""Mutation pass: break one feature at a time in a copy of the source and check that some test fails.

    python bench/mutation.py              # every mutant; exit 1 if any survives
    python bench/mutation.py --list       # the mutants and the tests each one runs
    python bench/mutation.py dropout_removed optimizer_choice_ignored_fast_step

Each mutant is a textual edit of one product module (it must match exactly once, so a mutant that no longer fits the
source says so instead of passing silently), applied to a fresh copy of the checkout; the tests named for it run there
with `pytest -x` and the first failing test is reported as the one that killed it. The same tests are first run on
the unmutated copy: a mutant only counts as killed by tests that pass without it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutant:
    name: str
    module: str  # path of the product module, from the repository root
    edits: tuple[tuple[str, str], ...]  # (exact text, replacement), each matching once
    tests: tuple[str, ...]  # pytest arguments: files or node ids, and -k expressions


LOOP, MLP, FAST, FLAT, STEP = ("dlrun/training/loop.py", "dlrun/model/mlp.py", "dlrun/training/fast_step.py",
                               "dlrun/training/flat_optim.py", "dlrun/training/step.py")
PREP, SCORE = "dlrun/data/preprocess.py", "dlrun/metrics/score.py"
EARLY_STOPPING_TESTS = ("tests/test_trainer.py", "tests/test_runner.py", "-k", "early_stopping")

MUTANTS = [
    # early stopping
    Mutant("early_stopping_removed", LOOP,
           (("([EarlyStopping(stopping.patience)] if stopping else [])", "[]"),), EARLY_STOPPING_TESTS),
    Mutant("stop_request_ignored", LOOP, (("        if state.stop:\n            break\n", ""),), EARLY_STOPPING_TESTS),
    Mutant("best_weights_not_restored", LOOP, (("    model.load_state_dict(state.best_state)\n", ""),), EARLY_STOPPING_TESTS),
    Mutant("min_delta_ignored", LOOP, (("stopping.min_delta if stopping else 0.0", "0.0"),),
           ("tests/test_trainer.py", "-k", "min_delta")),
    Mutant("best_checkpoint_every_epoch", "dlrun/training/callbacks.py",
           (("        if state.improved:\n            save_checkpoint", "        if True:\n            save_checkpoint"),),
           ("tests/test_runner.py", "-k", "early_stopping")),
    # activations
    Mutant("activation_choice_ignored", MLP, (("activation = ACTIVATIONS[cfg.activation]", 'activation = ACTIVATIONS["relu"]'),),
           ("tests/test_model.py",)),
    Mutant("activation_choice_ignored_by_fast_step", FAST, (("    kind = type(module)\n", "    kind = nn.ReLU\n"),),
           ("tests/test_fast_step.py", "-k", "activation")),
    # optimizers
    Mutant("optimizer_choice_ignored_fast_step", FLAT,
           (("        self.name = cfg.name\n", '        self.name = "adamw"\n'), ("}[cfg.name]", '}["adamw"]')),
           ("tests/test_trainer.py", "-k", "optimizer")),
    Mutant("optimizer_choice_ignored_autograd", STEP,
           (('    if cfg.name == "adam":\n', '    return torch.optim.AdamW(groups, lr=cfg.lr, **fused)\n    if cfg.name == "adam":\n'),),
           ("tests/test_trainer.py", "-k", "optimizer")),
    Mutant("adam_runs_as_adamw", FLAT,
           (('kernel = torch._fused_adamw_ if self.name == "adamw" else torch._fused_adam_', "kernel = torch._fused_adamw_"),),
           ("tests/test_trainer.py", "-k", "optimizer")),
    Mutant("nesterov_ignored", FLAT, (('"nesterov": cfg.nesterov,', '"nesterov": False,'),),
           ("tests/test_trainer.py", "-k", "optimizer")),
    Mutant("momentum_ignored", FLAT, (('"sgd": {"momentum": cfg.momentum,', '"sgd": {"momentum": 0.0,'),),
           ("tests/test_trainer.py", "-k", "optimizer")),
    # dropout
    Mutant("dropout_removed", MLP, (("            if dropout > 0:\n", "            if False:\n"),), ("tests/test_model.py",)),
    Mutant("dropout_removed_from_fast_step", FAST, (("            if layer.dropout > 0:", "            if False:"),),
           ("tests/test_fast_step.py", "-k", "dropout")),
    # imputation
    Mutant("numeric_imputation_removed", PREP,
           (('_finite_or_missing(pd.to_numeric(frame[column], errors="coerce")).fillna(state["fill"])',
             '_finite_or_missing(pd.to_numeric(frame[column], errors="coerce"))'),),
           ("tests/test_preprocess.py",)),
    Mutant("numeric_impute_choice_ignored", PREP,
           (('present.median() if self.cfg.numeric_impute == "median" else present.mean()', "present.median()"),),
           ("tests/test_preprocess.py",)),
    Mutant("categorical_imputation_removed", PREP,
           (('            keys = _category_keys(frame[column]).fillna(state["fill"])', "            keys = _category_keys(frame[column])"),),
           ("tests/test_preprocess.py",)),
    Mutant("categorical_impute_choice_ignored", PREP,
           (('if self.cfg.categorical_impute == "most_frequent":', "if False:"),), ("tests/test_preprocess.py",)),
    # inverse scaling
    Mutant("inverse_scaling_removed_from_predictions", PREP,
           (('        return scaled * state["std"] + state["mean"]', "        return scaled"),),
           ("tests/test_runner.py", "-k", "units")),
    Mutant("inverse_scaling_removed_from_metrics", SCORE,
           (('pred = out.squeeze(1).double() * state["std"] + state["mean"]', "pred = out.squeeze(1).double()"),
            ('true = y.double() * state["std"] + state["mean"]', "true = y.double()")),
           ("tests/test_runner.py", "-k", "units")),
    # resuming and the kill hook
    Mutant("resume_forgets_the_dropout_generator", "dlrun/training/checkpoint.py",
           (('    torch.set_rng_state(checkpoint["rng"]["torch"])', "    pass"),),
           ("tests/test_resume.py", "-k", "uninterrupted")),
    Mutant("kill_hook_disabled", "dlrun/core/faults.py", (("        os.kill(os.getpid(), signal.SIGKILL)", "        pass"),),
           ("tests/test_faults.py", "-k", "hook")),
]


def checkout_copy(destination: Path) -> None:
    """The tracked and untracked-but-not-ignored files of the checkout: what a fresh clone plus work in progress holds."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for relative in filter(None, listed):
        source = REPO / relative
        if source.is_file():
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def apply(mutant: Mutant, root: Path) -> None:
    path = root / mutant.module
    text = path.read_text()
    for old, new in mutant.edits:
        count = text.count(old)
        if count != 1:
            raise SystemExit(f"mutant {mutant.name}: {old!r} occurs {count} times in {mutant.module}; update the mutant")
        text = text.replace(old, new)
    path.write_text(text)


def run_tests(root: Path, tests: tuple[str, ...], timeout: float) -> tuple[int, list[str], float]:
    """pytest -x on the copy; returns (exit status, failing test ids, seconds)."""
    env = {**os.environ, "PYTHONPATH": str(root)}  # the copy, not the installed checkout
    started = time.perf_counter()
    try:
        result = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-rfE", *tests],
                                cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, ["(timed out)"], time.perf_counter() - started
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", result.stdout, flags=re.MULTILINE)
    return result.returncode, failed, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per pytest run")
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if not args.names or m.name in args.names]
    unknown = set(args.names) - {m.name for m in MUTANTS}
    if unknown:
        parser.error(f"unknown mutant(s): {', '.join(sorted(unknown))}")
    if args.list:
        for m in chosen:
            print(f"{m.name:45} {m.module:32} {' '.join(m.tests)}")
        return 0

    rows, survivors = [], 0
    with tempfile.TemporaryDirectory(prefix="dlrun-mutation-") as scratch:
        pristine = Path(scratch) / "pristine"
        checkout_copy(pristine)
        for selection in dict.fromkeys(m.tests for m in chosen):  # baseline: each selection passes unmutated
            status, failed, seconds = run_tests(pristine, selection, args.timeout)
            if status != 0:
                print(f"baseline fails for {' '.join(selection)}: {failed or status}; fix the tests first", file=sys.stderr)
                return 2
        for m in chosen:
            root = Path(scratch) / m.name
            shutil.copytree(pristine, root)
            apply(m, root)
            status, failed, seconds = run_tests(root, m.tests, args.timeout)
            killed = status != 0
            survivors += not killed
            verdict = "killed" if killed else "SURVIVED"
            rows.append((m.name, verdict, failed[0] if failed else f"(exit {status})" if killed else "-", seconds))
            print(f"{m.name:45} {verdict:8} {rows[-1][2]}  [{seconds:.0f} s]", flush=True)
            shutil.rmtree(root)

    print(f"\n| mutant | result | killed by |\n|---|---|---|")
    for name, verdict, by, _ in rows:
        print(f"| {name} | {verdict} | {by} |")
    print(f"\n{len(rows) - survivors} of {len(rows)} mutants killed")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())

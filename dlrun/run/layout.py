"""Every file and folder name in a run directory, in one place. Names built from user text (a target's confusion
matrix, its plots) go through `safe_file_name`, so a column called `a/../../x` stays inside the run.

Standard library only: `dlrun runs` imports this without torch.
"""

from __future__ import annotations

from dlrun.core.text import safe_file_name

RECORD = "run.json"  # status first, then the facts of the run (see record.py)
CONFIG = "config.yaml"  # the resolved config: alone it rebuilds the run
PREPROCESS = "preprocess.json"  # the fitted preprocessing state
HISTORY = "metrics.csv"  # one row per epoch
METRICS = "metrics.json"  # {split: {target: {metric: value}}} of the best epoch
PREDICTIONS = "predictions.csv"  # the test split with prediction columns
MEMBERS = "members.csv"  # a TabM run: each member's prediction on the test rows (run/members.py)
DIAGNOSTICS = "diagnostics.csv"  # per layer and epoch: gradient and weight norms, dead units
REPORT = "report.html"
EVALUATION = "eval.json"  # what `dlrun eval` writes unless given --output
ONNX_MODEL = "model.onnx"  # what `dlrun export` writes unless given --output; its sidecar is model.json
LOCK = "run.lock"  # held by the process training in the directory; gone when it ends
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = f"{CHECKPOINTS}/last.pt"  # every epoch: everything `--resume` needs
BEST_CHECKPOINT = f"{CHECKPOINTS}/best.pt"  # the weights `eval` and `predict` serve
TENSORBOARD = "tensorboard"  # event files, with tracking.tensorboard on
PLOTS = "plots"
DROPOUT_PLOT = f"{PLOTS}/dropout.png"  # drawn on request by `dlrun explain dropout`
# A cross-validation (or ensemble) directory: a normal run directory per fold under FOLDS, and the summaries
FOLDS = "folds"
CV_SUMMARY = "cv.json"  # every metric's mean, std and 95% interval over the folds
OOF_PREDICTIONS = "oof_predictions.csv"  # every non-test row's prediction by the fold model that did not train on it
LEARNING_CURVES_PLOT = f"{PLOTS}/learning_curves.png"  # per-fold train and validation loss


def confusion_file(target: str) -> str:
    return f"confusion_{safe_file_name(target)}.csv"


def plot_file(kind: str, target: str | None = None) -> str:
    """plots/<kind>.png, or plots/<kind>_<target>.png for a picture of one target."""
    return f"{PLOTS}/{kind}_{safe_file_name(target)}.png" if target is not None else f"{PLOTS}/{kind}.png"

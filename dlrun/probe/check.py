"""`check(cfg)`: the sanity check before a real run. Validate config and data, then overfit one batch of training rows.

A network that cannot drive one small batch to 100% accuracy (or R² near 1) will not learn the whole table either:
the learning rate, the model's size, a saturating activation or the data itself is wrong. It is the first step of
overfit -> regularise -> tune. Nothing is written: no run directory appears.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from dlrun.config.schema import AugmentConfig, Config
from dlrun.model.device import choose_threads, seeded_threads
from dlrun.core.errors import ConfigError
from dlrun.training.losses import Criterion
from dlrun.metrics.score import score
from dlrun.data.preprocess import Preprocessor
from dlrun.run.runner import prepare
from dlrun.data.tensors import Split
from dlrun.model.forward import forward_split
from dlrun.training.step import make_step

DEFAULT_STEPS = 2000  # an upper bound: the check stops once the batch is overfitted; the salary table needs ~1,500
CHECK_EVERY = 50  # steps between measurements of the batch (each costs a forward pass and a host sync)
R2_PASS = 0.99  # a regression target passes at R² >= 0.99 (less only if duplicate feature rows make that impossible)
NEAR_ZERO_LOSS = 0.01  # the loss counts as near zero below this (cross-entropy in nats, MSE in target std units²)
SMALL_WIDTH = 8  # a hidden layer narrower than this is named as a possible bottleneck
# Learning rates that usually train an MLP, per optimizer; outside them the advice names the lr first.
USUAL_LR = {"adam": (1e-4, 1e-2), "adamw": (1e-4, 1e-2), "rmsprop": (1e-4, 1e-2), "sgd": (1e-3, 1.0)}


@dataclass(frozen=True)
class TargetCheck:
    """How one target did on the batch: accuracy for a class target, R² for a numeric one."""

    target: str
    task: str
    metric: str  # accuracy | r2
    value: float  # on the batch, after training
    needed: float  # the value that passes
    best_possible: float  # the ceiling when rows with identical features carry different targets (else 1.0)
    passed: bool


@dataclass(frozen=True)
class SanityReport:
    """The data summary and the result of overfitting one batch, as plain data."""

    cfg: Config  # resolved, as checked: dropout set to 0
    summary: dict[str, Any]  # as in run.json: rows per split, encoded features, class balance or target range
    n_rows: int  # rows in the batch
    max_steps: int
    steps: int  # steps taken: fewer than max_steps when the batch was overfitted early
    losses: list[float]  # training loss before each step
    loss_end: float  # on the batch after the last step, dropout off
    targets: list[TargetCheck]
    notes: list[str]  # how the check differs from a training run, and what the data allows
    advice: list[str]  # plain words: what to do next, or the likely causes of a failure

    @property
    def loss_start(self) -> float:
        return self.losses[0]

    @property
    def passed(self) -> bool:
        return all(t.passed for t in self.targets)

    @property
    def loss_near_zero(self) -> bool:
        return self.loss_end < NEAR_ZERO_LOSS

    @property
    def verdict(self) -> str:
        if self.passed:
            return f"overfitted: the model fits the {self.n_rows} batch rows in {self.steps} steps"
        return f"not overfitted after {self.steps} steps: likely a bug or a setting that stops the model from learning"


def check(cfg: Config, steps: int = DEFAULT_STEPS, batch_rows: int | None = None) -> SanityReport:
    """Validate config and data as `train` does, then train a fresh model on one batch of training rows.

    The batch is `batch_rows` (default: data.batch_size) training rows drawn with the seed; the model is the
    configured one with dropout off, trained full-batch with the configured optimizer at a constant learning rate
    for at most `steps` steps. Raises DlrunError on a bad config or data, like `train`.
    """
    if steps < 1:
        raise ConfigError(f"--steps must be at least 1, got {steps}")
    if batch_rows is not None and batch_rows < 1:
        raise ConfigError(f"batch_rows must be at least 1, got {batch_rows}")
    ready = prepare(cfg.model_copy(update={"model": cfg.model.model_copy(update={"dropout": 0.0})}))
    device, model, prep = ready.device, ready.model, ready.prep
    train = ready.splits["train"]
    n_rows = min(batch_rows or cfg.data.batch_size, len(train))
    rows = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.seed))[:n_rows].to(device)
    batch = Split(train.X[rows], {target: y[rows] for target, y in train.y.items()})  # (n_rows, n_features)
    best = {target: best_possible(batch.X, y, prep.is_classification(target))
            for target, y in batch.y.items()}

    criterion = Criterion(prep, cfg.train, batch.y)
    # The step `train` would take (fast or autograd), so the check exercises the same code.
    train_step = make_step(model, ready.cfg, criterion, device)
    losses = []  # kept on the device, read back once at the end
    threads = choose_threads(cfg.train.threads, len(prep.feature_names_), cfg.model.hidden, n_rows, device)
    with seeded_threads(cfg.seed, threads, device):
        model.train()
        for step in range(1, steps + 1):
            losses.append(sum(train_step(batch.X, batch.y)))  # the batch loss: the sum of the targets' terms
            if step % CHECK_EVERY == 0 or step == steps:
                outputs = forward_split(model, batch.X)
                loss_end = float(criterion(outputs, batch.y))
                results = _judge(score(outputs, batch.y, prep), prep, best, n_rows)
                overfitted = all(t.passed for t in results) and loss_end < NEAR_ZERO_LOSS
                if overfitted or not math.isfinite(loss_end):
                    break

    curve = torch.stack(losses).tolist()
    notes = _notes(cfg, results)
    advice = _advice(ready.cfg, curve, loss_end, step, n_rows, results, prep)
    return SanityReport(ready.cfg, ready.summary, n_rows, steps, step, curve, loss_end, results, notes, advice)


def best_possible(X: torch.Tensor, y: torch.Tensor, classification: bool) -> float:
    """The best accuracy (or R²) any model can reach on these rows: rows with identical features get one prediction."""
    _, group = torch.unique(X, dim=0, return_inverse=True)  # (n_rows,) index of each row's distinct feature vector
    n_groups = int(group.max()) + 1
    if classification:
        n_classes = int(y.max()) + 1
        counts = torch.bincount(group * n_classes + y, minlength=n_groups * n_classes).view(n_groups, n_classes)
        return float(counts.max(dim=1).values.sum()) / len(y)  # each group predicts its most frequent class
    sizes = torch.bincount(group, minlength=n_groups).to(y.dtype)
    means = torch.zeros(n_groups, dtype=y.dtype, device=y.device).index_add_(0, group, y) / sizes
    total = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - means[group]) ** 2).sum()) / total if total > 0 else 1.0


def _judge(scores: dict[str, dict[str, float]], prep: Preprocessor, best: dict[str, float], n_rows: int) -> list[TargetCheck]:
    results = []
    for target, metrics in scores.items():
        if prep.is_classification(target):
            needed = best[target]
            passed = metrics["accuracy"] >= needed - 0.5 / n_rows  # accuracy is a float32 count of rows
            results.append(TargetCheck(target, "classification", "accuracy", metrics["accuracy"], needed, best[target],
                                       passed))
        elif math.isfinite(metrics["r2"]):
            needed = best[target] - (1 - R2_PASS)
            results.append(TargetCheck(target, "regression", "r2", metrics["r2"], needed, best[target], metrics["r2"] >= needed))
        else:  # R² is undefined for one row or a constant target: ask for an RMSE under 10% of the target's std
            rmse = metrics["rmse"] / prep.regression_scale(target)
            results.append(TargetCheck(target, "regression", "r2", metrics["r2"], R2_PASS, 1.0,
                                       rmse ** 2 < 1 - R2_PASS))
    return results


def _notes(cfg: Config, results: list[TargetCheck]) -> list[str]:
    """How this check differs from `dlrun train` with the same config, and what duplicate rows allow."""
    dropout = cfg.model.layer_dropout()
    notes = [f"dropout off (configured: {cfg.model.dropout})" if any(dropout) else "dropout off (none configured)"]
    if cfg.scheduler.name != "none" or cfg.scheduler.warmup_epochs:
        notes.append(f"constant learning rate: scheduler {cfg.scheduler.name} and warm-up are not applied")
    if cfg.augment != AugmentConfig():
        notes.append("augmentation off")
    if cfg.train.init_from or cfg.train.freeze or cfg.train.trunk_lr:
        notes.append("fresh weights, all trainable: train.init_from, train.freeze and train.trunk_lr are not applied")
    for t in results:
        if t.best_possible < 1.0:
            what = f"{t.best_possible:.2%} accuracy" if t.metric == "accuracy" else f"R² {t.best_possible:.4f}"
            notes.append(f"some batch rows have identical features but a different {t.target}: at most {what} is possible")
    return notes


def _advice(cfg: Config, losses: list[float], loss_end: float, steps: int, n_rows: int, results: list[TargetCheck],
            prep: Preprocessor) -> list[str]:
    """Plain words from the numbers: the next step after a pass, the likely causes after a failure."""
    opt, hidden, loss_start = cfg.optimizer, cfg.model.hidden, losses[0]
    low, high = USUAL_LR[opt.name]
    lr_outside = [] if low <= opt.lr <= high else [
        f"optimizer.lr = {opt.lr:g} is {'low' if opt.lr < low else 'high'} for {opt.name} (usually {low:g} to {high:g}); "
        f"try {math.sqrt(low * high):.1g}"]
    if all(t.passed for t in results):
        advice = []
        if loss_end >= NEAR_ZERO_LOSS:
            if any(t.best_possible < 1.0 for t in results):
                why = "rows with identical features but different targets keep it up"
            elif cfg.train.label_smoothing:
                why = "train.label_smoothing keeps it above zero"
            else:
                why = f"{steps} steps were not enough"
            advice += [f"the targets are fitted but the loss stopped at {loss_end:.4g}, not near zero: {why}", *lr_outside]
        advice.append("next: `dlrun train`; if val_loss lags train_loss, regularise (model.dropout, "
                      "optimizer.weight_decay), then tune (optimizer.lr, model.hidden)")
        return advice
    lowest = min(losses)
    lower_lr = "" if lr_outside else f"; try {opt.lr / 10:g}"  # else the usual range is named below
    if not math.isfinite(loss_end) or loss_end > loss_start:
        advice = [f"the loss grew ({loss_start:.4g} -> {loss_end:.4g}): optimizer.lr = {opt.lr:g} is likely too high"
                  f"{lower_lr}, or set train.grad_clip"]
    elif loss_end > 2 * lowest and lowest < 0.9 * loss_start:
        advice = [f"the loss bounced (lowest {lowest:.4g}, last {loss_end:.4g}): optimizer.lr = {opt.lr:g} is likely "
                  f"too high{lower_lr}"]
    elif loss_end > 0.9 * loss_start:
        advice = [f"the loss barely moved ({loss_start:.4g} -> {loss_end:.4g}) in {steps} steps"]
    else:
        advice = [f"the loss fell ({loss_start:.4g} -> {loss_end:.4g}) but not far enough in {steps} steps; "
                  f"--steps {2 * steps} allows more"]
    advice += lr_outside
    if cfg.model.activation in ("sigmoid", "tanh"):
        advice.append(f"model.activation = {cfg.model.activation} saturates and passes small gradients; try relu")
    if min(hidden, default=SMALL_WIDTH) < SMALL_WIDTH:
        advice.append(f"model.hidden = {hidden} has a layer of width {min(hidden)}: likely too small to memorise "
                      f"{n_rows} rows; widen it")
    if opt.weight_decay >= 0.01:
        advice.append(f"optimizer.weight_decay = {opt.weight_decay:g} pulls the weights to zero; lower it")
    advice.append(f"if none of these fits, suspect the data: is data.target the column you mean, and do the "
                  f"{len(prep.feature_names_)} encoded features carry information about it (not ids, not constant)?")
    return advice

"""One optimisation step: the optimizer over parameter groups, and the fast or autograd step."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dlrun.config.schema import Config, OptimizerConfig
from dlrun.training.fast_step import FastStep, unsupported
from dlrun.training.flat_optim import missing_kernel
from dlrun.training.losses import Criterion


def make_optimizer(model: nn.Module, cfg: OptimizerConfig, device: torch.device, trunk_lr: float | None = None) -> torch.optim.Optimizer:
    return optimizer_over(param_groups(model, cfg, trunk_lr), cfg, device)


def optimizer_over(groups: list[dict[str, Any]], cfg: OptimizerConfig, device: torch.device) -> torch.optim.Optimizer:
    """The configured torch optimizer over parameter groups."""
    # The fused kernels update every parameter in one call instead of one small op per tensor (where this torch has them).
    fused = {"fused": True} if device.type in ("cpu", "cuda") and missing_kernel(cfg.name, device) is None else {}
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, **fused)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, **fused)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, **fused)
    return torch.optim.RMSprop(groups, lr=cfg.lr, momentum=cfg.momentum, alpha=cfg.alpha)


def param_groups(model: nn.Module, cfg: OptimizerConfig, trunk_lr: float | None) -> list[dict[str, Any]]:
    """Trainable parameters grouped by weight decay (biases and norms may be exempt) and learning rate (the trunk
    may fine-tune slower than the heads). Frozen parameters are left out."""
    linear_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decay = cfg.weight_decay if cfg.decay_bias_and_norm or id(param) in linear_weights else 0.0
        lr = trunk_lr if trunk_lr is not None and model.head_target(name) is None else cfg.lr
        groups.setdefault((decay, lr), []).append(param)
    return [{"params": params, "weight_decay": decay, "lr": lr} for (decay, lr), params in groups.items()]


class AutogradStep:
    """`step(X, y) -> loss terms` through autograd and torch.optim: the general path, for any model and config."""

    def __init__(self, model: nn.Module, criterion: Criterion, optimizer: torch.optim.Optimizer, clip: float | None):
        self.model, self.criterion, self.optimizer, self.clip = model, criterion, optimizer, clip
        self.params = [p for p in model.parameters() if p.requires_grad]

    def __call__(self, X: torch.Tensor, y: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        return train_step(self.model, X, y, self.criterion, self.optimizer, self.params, self.clip)


def make_step(model: nn.Module, cfg: Config, criterion: Criterion, device: torch.device) -> FastStep | AutogradStep:
    """The run's training step: the hand-written fast path when it covers the model and config, else autograd.
    Both hold the optimizer as `.optimizer` and compute the same step (tests/test_fast_step.py)."""
    groups = param_groups(model, cfg.optimizer, cfg.train.trunk_lr)
    if unsupported(model, cfg) is None:
        return FastStep(model, criterion, groups, cfg.optimizer, cfg.train.grad_clip)
    return AutogradStep(model, criterion, optimizer_over(groups, cfg.optimizer, device), cfg.train.grad_clip)


def train_step(model: nn.Module, X: torch.Tensor, y: dict[str, torch.Tensor], criterion: Criterion,
               optimizer: torch.optim.Optimizer, params: list[torch.Tensor], clip: float | None) -> tuple[torch.Tensor, ...]:
    """One optimisation step on one batch through autograd; returns each target's weighted loss term (their sum is the
    batch loss), detached and on the device."""
    terms = criterion.terms(model(X), y)
    loss = terms[0]
    for term in terms[1:]:
        loss = loss + term
    for p in params:  # what zero_grad(set_to_none=True) does, without its per-call overhead
        p.grad = None
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(params, clip)
    optimizer.step()
    return tuple(term.detach() for term in terms)

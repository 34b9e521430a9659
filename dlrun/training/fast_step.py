"""The fast training step: the MLP's forward and backward as explicit matmuls, one flat buffer per parameter group.

A small tabular MLP spends most of an autograd step in framework overhead (graph building, per-tensor optimizer
loops), not arithmetic. Here the step is written out: a matmul per layer forward, the matching matmuls backward
with each activation's own aten backward kernel (the ones autograd calls, so gradients agree with autograd), the
gradients written straight into one flat buffer per optimizer parameter group, and the optimizer's fused kernel
called on those buffers directly (flat_optim.py).

The model's parameters stay the source of truth: they are re-pointed to views of the flat buffers, so
`state_dict`, checkpoints, `load_state_dict` (early stopping's best epoch, resume) and any callback that reads or
differentiates `model.named_parameters()` see the weights as they are, without copies. Whatever this step does not
cover (norm layers, other modules) trains on the autograd path in trainer.py; `unsupported` says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from dlrun.config.schema import Config, OptimizerConfig
from dlrun.model.mlp import MLP
from dlrun.training.flat_optim import FlatOptimizer, missing_kernel
from dlrun.training.losses import Criterion

aten = torch.ops.aten
# The private ops the step calls beyond public torch, besides each activation's backward (ACTIVATION_BACKWARD) and the
# optimizer's fused kernel (flat_optim.KERNELS). torch does not promise them across releases: where one is missing
# the run trains on autograd and run.json says why, instead of the run crashing.
PRIVATE_OPS = ("aten.mse_loss", "aten.mse_loss_backward", "aten.nll_loss_forward", "aten.nll_loss_backward",
               "torch._log_softmax_backward_data", "torch.native_dropout", "torch._foreach_norm", "torch._foreach_mul_",
               "torch._foreach_add_")
ACTIVATION_BACKWARD = {nn.ReLU: "aten.threshold_backward", nn.LeakyReLU: "aten.leaky_relu_backward",
                       nn.Tanh: "aten.tanh_backward", nn.Sigmoid: "aten.sigmoid_backward",
                       nn.GELU: "aten.gelu_backward", nn.ELU: "aten.elu_backward"}


def activation_functions(module: nn.Module) -> tuple[Callable[[torch.Tensor], torch.Tensor], Callable[..., torch.Tensor]]:
    """(forward(z) -> a, backward(grad of a, z, a) -> grad of z) for an activation module, or KeyError.

    Backward calls the aten kernel autograd itself uses for that activation, so the gradients are autograd's."""
    kind = type(module)
    if kind is nn.ReLU:
        return torch.relu, lambda grad, z, a: aten.threshold_backward(grad, a, 0)
    if kind is nn.LeakyReLU:
        slope = module.negative_slope
        return (lambda z: F.leaky_relu(z, slope)), lambda grad, z, a: aten.leaky_relu_backward(grad, z, slope, False)
    if kind is nn.Tanh:
        return torch.tanh, lambda grad, z, a: aten.tanh_backward(grad, a)
    if kind is nn.Sigmoid:
        return torch.sigmoid, lambda grad, z, a: aten.sigmoid_backward(grad, a)
    if kind is nn.GELU:
        approximate = module.approximate
        return (lambda z: F.gelu(z, approximate=approximate)), lambda grad, z, a: aten.gelu_backward(grad, z, approximate=approximate)
    if kind is nn.ELU:
        alpha = module.alpha
        return (lambda z: F.elu(z, alpha)), lambda grad, z, a: aten.elu_backward(grad, alpha, 1, 1, False, z)
    raise KeyError(kind.__name__)


def unsupported(model: nn.Module, cfg: Config) -> str | None:
    """Why the fast step cannot train `model` with `cfg` (the run then uses autograd), or None when it can."""
    if not cfg.train.fast_path:
        return "train.fast_path is false"
    if getattr(model, "autograd_only", None):  # TabM, embeddings: layers the hand-written step does not cover
        return model.autograd_only
    if not isinstance(model, MLP):
        return f"{type(model).__name__} is not dlrun's MLP"
    if not any(p.requires_grad for p in model.parameters()):
        return "every parameter is frozen (train.freeze)"
    if any(p.dtype != torch.float32 for p in model.parameters()):
        return "parameters that are not float32"
    if any(p.device.type not in ("cpu", "cuda") for p in model.parameters()):
        return "a device other than cpu or cuda (no fused optimizer kernels)"
    try:
        layers = _trunk_layers(model.hidden_layers())
    except ValueError as exc:
        return str(exc)
    activations = {ACTIVATION_BACKWARD[type(activation)] for _, activation, _ in layers}
    missing = [op for op in (*PRIVATE_OPS, *sorted(activations)) if not _has_op(op)]
    if missing:
        return f"torch {torch.__version__} lacks {', '.join(missing)}"
    return missing_kernel(cfg.optimizer.name, next(p for p in model.parameters() if p.requires_grad).device)


def _has_op(op: str) -> bool:
    namespace, name = op.split(".")
    return hasattr(aten if namespace == "aten" else torch, name)


@dataclass
class _Layer:
    """A hidden layer (Linear, activation, optional dropout) or a head (Linear alone). W and b are views of the flat
    buffers, or a frozen parameter's own tensor."""

    W: torch.Tensor  # (out, in)
    W_t: torch.Tensor  # (in, out), a view of W made once: the forward matmul's operand
    b: torch.Tensor  # (out,)
    grad_W: torch.Tensor | None  # None: frozen (train.freeze), no gradient computed
    grad_b: torch.Tensor | None
    forward: Callable[[torch.Tensor], torch.Tensor] | None  # the activation; None for a head (raw outputs)
    backward: Callable[..., torch.Tensor] | None
    dropout: float


def _trunk_layers(trunk: list[nn.Module]) -> list[tuple[nn.Linear, nn.Module, float]]:
    """(Linear, activation, dropout p) per hidden layer; ValueError naming the first module the fast step lacks."""
    layers, modules = [], list(trunk)
    while modules:
        linear = modules.pop(0)
        if not isinstance(linear, nn.Linear) or not modules or not _is_activation(modules[0]):
            culprit = linear if not isinstance(linear, nn.Linear) or not modules else modules[0]
            raise ValueError(f"{type(culprit).__name__} layers")
        activation = modules.pop(0)
        dropout = modules.pop(0).p if modules and isinstance(modules[0], nn.Dropout) else 0.0
        layers.append((linear, activation, dropout))
    return layers


def _is_activation(module: nn.Module) -> bool:
    try:
        activation_functions(module)
    except KeyError:
        return False
    return True


class FastStep:
    """`step(X, y) -> loss`: one optimisation step of dlrun's MLP without autograd. Build it only when
    `unsupported(model, cfg)` is None; it re-points the model's parameters into flat buffers (values unchanged).

    `groups` are the optimizer's parameter groups of the model (trainer.param_groups); the step's `optimizer` is a
    FlatOptimizer over one flat tensor per group, with torch.optim's param_groups and state_dict interface.
    """

    def __init__(self, model: nn.Module, criterion: Criterion, groups: list[dict[str, Any]], cfg: OptimizerConfig,
                 clip: float | None):
        self.clip = clip
        self.reduce_grads: Callable[[list[torch.Tensor]], None] | None = None  # data-parallel: average over processes
        views: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id(parameter) -> (value view, grad view)
        flat_groups, self.grads = [], []
        for group in groups:
            params = group["params"]
            flat = torch.cat([p.detach().reshape(-1) for p in params])  # (n_params_in_group,)
            grad = torch.zeros_like(flat)
            flat.grad = grad  # the optimizer reads it; the step overwrites every element of it each step
            offset = 0
            for p in params:
                value, grad_view = flat[offset : offset + p.numel()].view_as(p), grad[offset : offset + p.numel()].view_as(p)
                p.data = value  # the Parameter now lives in the flat buffer; `value` itself needs no grad
                p.grad = grad_view  # as after an autograd step, p.grad holds the last step's gradient
                views[id(p)] = (value, grad_view)
                offset += p.numel()
            flat_groups.append({**group, "params": [flat]})
            self.grads.append(grad)
        self.optimizer = FlatOptimizer(flat_groups, cfg)

        def layer(linear: nn.Linear, activation: nn.Module | None, dropout: float) -> _Layer:
            # A frozen parameter is in no optimizer group: it keeps its own storage and gets no gradient.
            W, grad_W = views.get(id(linear.weight), (linear.weight.detach(), None))
            b, grad_b = views.get(id(linear.bias), (linear.bias.detach(), None))
            forward, backward = activation_functions(activation) if activation is not None else (None, None)
            return _Layer(W, W.t(), b, grad_W, grad_b, forward, backward, dropout)

        self.layers = [layer(*parts) for parts in _trunk_layers(model.hidden_layers())]
        self.heads = [layer(model.head(target), None, 0.0) for target in model.targets]
        # Backward stops below the lowest layer with a trainable parameter (frozen first layers need no gradient).
        trainable = [i for i, l in enumerate(self.layers) if l.grad_W is not None or l.grad_b is not None]
        self.lowest_trained = trainable[0] if trainable else len(self.layers)
        self.loss_parts = criterion.parts  # (target, is_classification, weight, options), in head order
        device = self.grads[0].device
        self.loss_grads = [torch.tensor(float(weight), device=device) for _, _, weight, _ in self.loss_parts]

    def __call__(self, X: torch.Tensor, y: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """One step on a batch X (B, n_features); returns each target's weighted loss term, whose sum is the batch loss
        (0-dim each, on the device, no host sync)."""
        # Forward, keeping what backward needs: per layer (input, pre-activation, activation output, dropout scale or None).
        saved = []
        h = X
        for layer in self.layers:
            z = torch.addmm(layer.b, h, layer.W_t)  # (B, out)
            a = layer.forward(z)
            noise = None
            h_in, h = h, a
            if layer.dropout > 0:  # as F.dropout does it, drawing the same numbers from the same generator
                if a.is_cuda:  # one fused kernel there: output and keep-mask
                    h, keep = torch.native_dropout(a, layer.dropout, True)
                    noise = keep * (1 / (1 - layer.dropout))
                else:  # on the CPU: a Bernoulli mask / (1 - p), times the input
                    noise = torch.empty_like(a).bernoulli_(1 - layer.dropout).div_(1 - layer.dropout)
                    h = a * noise
            saved.append((h_in, z, a, noise))

        # Heads and losses; grad_shared collects dLoss/dh of the last hidden layer (B, width) over the heads.
        terms, grad_shared = [], None
        for head, part, loss_grad in zip(self.heads, self.loss_parts, self.loss_grads):
            out = torch.addmm(head.b, h, head.W_t)  # (B, n_outputs)
            loss, grad_out = _loss_and_grad(out, y[part[0]], part, loss_grad)
            terms.append(loss)
            _weight_and_bias_grads(head, grad_out, h)
            back = grad_out @ head.W
            grad_shared = back if grad_shared is None else grad_shared + back

        grad = grad_shared
        for i in range(len(self.layers) - 1, self.lowest_trained - 1, -1):
            layer, (h_in, z, a, noise) = self.layers[i], saved[i]
            if noise is not None:
                grad = grad * noise
            grad = layer.backward(grad, z, a)  # (B, out)
            _weight_and_bias_grads(layer, grad, h_in)
            if i > self.lowest_trained:
                grad = grad @ layer.W  # (B, in)

        if self.reduce_grads is not None:  # before clipping: the norm clipped is the whole batch's (distributed.py)
            self.reduce_grads(self.grads)
        if self.clip is not None:  # what torch.nn.utils.clip_grad_norm_ does, on the flat gradients
            total_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(self.grads)))
            torch._foreach_mul_(self.grads, torch.clamp(self.clip / (total_norm + 1e-6), max=1.0))
        self.optimizer.step()
        return tuple(terms)


def _weight_and_bias_grads(layer: _Layer, grad: torch.Tensor, h_in: torch.Tensor) -> None:
    """Write dLoss/dW = grad^T h_in (out, in) and dLoss/db = sum of grad over the batch into the flat gradients."""
    if layer.grad_W is not None:
        torch.mm(grad.t(), h_in, out=layer.grad_W)
    if layer.grad_b is not None:
        torch.sum(grad, 0, out=layer.grad_b)


def _loss_and_grad(out: torch.Tensor, y: torch.Tensor, part: tuple, loss_grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A head's weighted loss term (as Criterion computes it) and its gradient with respect to the head's output.

    loss_grad is the term's loss weight as a 0-dim tensor: the gradient autograd feeds into the loss's backward."""
    _, is_classification, weight, options = part
    if not is_classification:
        pred = out.squeeze(1)  # (B,)
        loss = aten.mse_loss(pred, y)  # F.mse_loss's kernel without its Python-side broadcasting checks
        grad = aten.mse_loss_backward(loss_grad, pred, y, 1).unsqueeze(1)  # 1 = mean reduction
    else:
        class_weight, smoothing = options.get("weight"), options["label_smoothing"]
        log_p = torch.log_softmax(out, 1)  # (B, n_classes)
        nll, total_weight = aten.nll_loss_forward(log_p, y, class_weight, 1, -100)
        grad_log_p = aten.nll_loss_backward(loss_grad * (1 - smoothing) if smoothing else loss_grad, log_p, y,
                                            class_weight, 1, -100, total_weight)
        loss = nll
        if smoothing:
            # torch's label smoothing: (1 - s) * nll + s / C * smooth, smooth = -(log_p * w).sum() / total_weight
            # (w = 1 and total_weight = B without class weights); its gradient is constant in log_p.
            n_classes = out.shape[1]
            per_class = class_weight if class_weight is not None else torch.ones_like(out[0])
            smooth = -(log_p * per_class).sum() / total_weight
            loss = (1 - smoothing) * nll + smooth * (smoothing / n_classes)
            grad_log_p = grad_log_p - (loss_grad * (smoothing / n_classes) / total_weight) * per_class
        grad = torch._log_softmax_backward_data(grad_log_p, log_p, 1, log_p.dtype)
    return (weight * loss if weight != 1.0 else loss), grad

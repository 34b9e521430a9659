"""The fast step's optimizer: torch's own update kernels, called directly on one flat tensor per parameter group.

It computes what trainer.optimizer_over's torch.optim optimizer computes (tests/test_fast_step.py holds them
equal step by step), with the interface the training loop and its callbacks use: `param_groups` (the lr schedule
writes `lr` there), `state_dict` / `load_state_dict` (checkpoints and resume) and `step`. Going around torch.optim
skips its per-step bookkeeping and, on first use, its import of torch._dynamo (about 2 s of every `dlrun train`).
"""

from __future__ import annotations

from typing import Any

import torch

from dlrun.config.schema import OptimizerConfig

# torch.optim's defaults, which the general path uses too.
ADAM_BETAS, ADAM_EPS, RMSPROP_EPS = (0.9, 0.999), 1e-8, 1e-8
# The private fused kernel each optimizer calls (RMSprop uses public tensor ops only).
KERNELS = {"adam": "_fused_adam_", "adamw": "_fused_adamw_", "sgd": "_fused_sgd_"}


def missing_kernel(name: str, device: torch.device) -> str | None:
    """Why this torch cannot run optimizer `name`'s fused kernel on `device` (it lacks the kernel, or has none for
    that device), or None when it can. Tried on a one-element tensor: the kernels are private, so an older or
    differently built torch may lack one without any version number saying so."""
    kernel = KERNELS.get(name)
    if kernel is None:
        return None
    if not hasattr(torch, kernel):
        return f"torch {torch.__version__} has no torch.{kernel} (the fused {name} kernel)"
    flat = torch.zeros(1, device=device)
    flat.grad = torch.zeros(1, device=device)
    probe = FlatOptimizer([{"params": [flat], "lr": 0.0, "weight_decay": 0.0}],
                          OptimizerConfig(name=name, momentum=0.0))
    try:
        probe.step()
    except (RuntimeError, NotImplementedError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"torch {torch.__version__} cannot run torch.{kernel} on {device.type} ({reason})"
    return None


class FlatOptimizer:
    """The configured optimizer over groups of single flat tensors, each with its gradient in `.grad`.

    Adam and AdamW run torch's fused kernels (`torch.optim.Adam(fused=True)` calls the same ones), SGD its fused
    kernel; RMSprop, which torch runs as separate tensor ops on the CPU, repeats those ops.
    """

    def __init__(self, groups: list[dict[str, Any]], cfg: OptimizerConfig):
        self.name = cfg.name
        options = {
            "adam": {"betas": ADAM_BETAS, "eps": ADAM_EPS},
            "adamw": {"betas": ADAM_BETAS, "eps": ADAM_EPS},
            "sgd": {"momentum": cfg.momentum, "nesterov": cfg.nesterov, "dampening": 0.0},
            "rmsprop": {"momentum": cfg.momentum, "alpha": cfg.alpha, "eps": RMSPROP_EPS},
        }[cfg.name]
        self.param_groups = [{**options, **group} for group in groups]
        for group in self.param_groups:
            assert len(group["params"]) == 1, "one flat tensor per group"
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    def _flat(self) -> list[torch.Tensor]:
        return [group["params"][0] for group in self.param_groups]

    def step(self) -> None:
        if not self.state:
            self._init_state()
        if self.name in ("adam", "adamw"):
            self._adam()
        elif self.name == "sgd":
            self._sgd()
        else:
            self._rmsprop()

    def zero_grad(self, set_to_none: bool = True) -> None:
        """For callbacks that treat TrainState.optimizer as a torch optimizer. The gradients are zeroed rather than
        dropped, whatever `set_to_none` says: the fast step writes each step's gradients into these buffers."""
        for flat in self._flat():
            flat.grad.zero_()

    def _init_state(self) -> None:
        """The state torch.optim creates on its first step (fused Adam keeps `step` as a float32 tensor)."""
        for flat in self._flat():
            step = torch.zeros((), dtype=torch.float32, device=flat.device)
            if self.name in ("adam", "adamw"):
                self.state[flat] = {"step": step, "exp_avg": torch.zeros_like(flat), "exp_avg_sq": torch.zeros_like(flat)}
            elif self.name == "sgd":
                # momentum 0 keeps no buffer; otherwise torch fills the buffer with the first gradient (is_first_step)
                self.state[flat] = {} if self.param_groups[0]["momentum"] == 0 else {"momentum_buffer": None}
            else:
                self.state[flat] = {"step": step, "square_avg": torch.zeros_like(flat)}
                if self.param_groups[0]["momentum"] > 0:
                    self.state[flat]["momentum_buffer"] = torch.zeros_like(flat)

    def _adam(self) -> None:
        kernel = torch._fused_adamw_ if self.name == "adamw" else torch._fused_adam_
        torch._foreach_add_([self.state[flat]["step"] for flat in self._flat()], 1)
        for group in self.param_groups:
            flat = group["params"][0]
            state = self.state[flat]
            beta1, beta2 = group["betas"]
            kernel([flat], [flat.grad], [state["exp_avg"]], [state["exp_avg_sq"]], [], [state["step"]], amsgrad=False,
                   lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"],
                   maximize=False)

    def _sgd(self) -> None:
        for group in self.param_groups:
            flat = group["params"][0]
            state = self.state[flat]
            buffers, first = [], False
            if group["momentum"] != 0:
                first = state["momentum_buffer"] is None
                if first:
                    state["momentum_buffer"] = torch.empty_like(flat)
                buffers = [state["momentum_buffer"]]
            torch._fused_sgd_([flat], [flat.grad], buffers, weight_decay=group["weight_decay"], momentum=group["momentum"],
                              lr=group["lr"], dampening=group["dampening"], nesterov=group["nesterov"], maximize=False,
                              is_first_step=first)

    def _rmsprop(self) -> None:
        """torch.optim.rmsprop's single-tensor update (centered=False), op for op."""
        for group in self.param_groups:
            flat = group["params"][0]
            state, grad, alpha = self.state[flat], flat.grad, group["alpha"]
            state["step"] += 1
            if group["weight_decay"] != 0:
                grad = grad.add(flat, alpha=group["weight_decay"])
            square_avg = state["square_avg"]
            square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
            avg = square_avg.sqrt().add_(group["eps"])
            if group["momentum"] > 0:
                buffer = state["momentum_buffer"]
                buffer.mul_(group["momentum"]).addcdiv_(grad, avg)
                flat.add_(buffer, alpha=-group["lr"])
            else:
                flat.addcdiv_(grad, avg, value=-group["lr"])

    def state_dict(self) -> dict[str, Any]:
        """torch.optim's layout: state by group index, groups with their options; plain tensors and values only."""
        index = {flat: i for i, flat in enumerate(self._flat())}
        return {
            "state": {index[flat]: dict(state) for flat, state in self.state.items()},
            "param_groups": [{**{k: v for k, v in group.items() if k != "params"}, "params": [i]}
                             for i, group in enumerate(self.param_groups)],
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Load a state_dict of this optimizer, or of torch.optim over the same groups' separate parameters (a run
        checkpointed on the autograd path): per-parameter state is concatenated in the flat buffer's order."""
        flats = self._flat()
        if len(saved["param_groups"]) != len(flats):
            raise ValueError(f"the saved optimizer has {len(saved['param_groups'])} parameter groups, this one {len(flats)}")
        state = {}
        for flat, group, saved_group in zip(flats, self.param_groups, saved["param_groups"]):
            group.update({k: v for k, v in saved_group.items() if k != "params"})
            parts = [saved["state"][i] for i in saved_group["params"] if i in saved["state"]]
            if not parts:
                continue  # saved before its first step
            state[flat] = {}
            for key, value in parts[0].items():
                if isinstance(value, torch.Tensor) and value.dim():
                    value = torch.cat([part[key].reshape(-1) for part in parts])
                    if value.numel() != flat.numel():
                        raise ValueError(f"the saved optimizer's {key} holds {value.numel()} values, this group {flat.numel()}")
                # 0-dim entries (the step count) are the same for every parameter of a group
                state[flat][key] = value.to(flat.device, copy=True) if isinstance(value, torch.Tensor) else value
        self.state = state

"""TabM (Gorishniy et al., ICLR 2025): k MLPs that share their weights and differ by per-member scalings and biases
(BatchEnsemble), trained in parallel on the same batches.

Built from the authors' `tabm` package: `LinearBatchEnsemble` (the shared weight with per-member r, s and bias,
initialised TabM's way: random signs or normal for the first layer's r, ones elsewhere) and `LinearEnsemble` (k
independent heads). dlrun adds its own contract around them: the configured widths, activation and dropout per
layer, and one output tensor per target.

In training mode each head returns every member's output (B, k, n_outputs); the loss is the mean of the k members'
losses (losses.py). In eval mode it returns the ensemble's prediction (B, n_outputs): the mean of the members'
values for a regression head, the log of the mean of their probabilities for a class head (softmax of it is the
mean probability, so every metric, plot and prediction reads it as ordinary logits).
"""

from __future__ import annotations

import math

import torch
from tabm import EnsembleView, LinearBatchEnsemble, LinearEnsemble
from torch import nn

from dlrun.config.schema import ModelConfig
from dlrun.data.scaling import InputLayout
from dlrun.model.embeddings import FeatureInputs, needs_inputs
from dlrun.model.layers import TrunkAndHeads, hidden_stack


class TabM(TrunkAndHeads, nn.Module):
    """x (B, n_features) -> {target: (B, k, n_outputs)} in training, {target: (B, n_outputs)} in eval."""

    autograd_only = "model.type: tabm (batch-ensemble layers)"  # fast_step.unsupported reads this

    def __init__(self, n_features: int, output_sizes: dict[str, int], cfg: ModelConfig, layout: InputLayout | None):
        super().__init__()
        self.k = cfg.k
        self.inputs = FeatureInputs(layout, cfg) if needs_inputs(layout, cfg) else None
        width = self.inputs.d_out if self.inputs is not None else n_features
        chunks = self.inputs.chunks if self.inputs is not None else None
        self.ensemble_view = EnsembleView(k=cfg.k)  # (B, d) -> (B, k, d)
        # TabM's initialisation: the first layer's input scalings random (normal after embeddings), the rest ones.
        first = ("normal" if cfg.num_embeddings != "none" else "random-signs", "ones")

        def ensemble_linear(index: int, n_in: int, n_out: int) -> nn.Module:
            return LinearBatchEnsemble(n_in, n_out, k=cfg.k, scaling_init=first if index == 0 else "ones",
                                       first_scaling_init_chunks=chunks if index == 0 else None)

        self.trunk, width = hidden_stack(cfg, width, ensemble_linear, norms=False)  # norms act on (B, d), not (B, k, d)
        self.targets = list(output_sizes)
        self.regression = [size == 1 for size in output_sizes.values()]  # a class head has one logit per class (>= 2)
        self.heads = nn.ModuleList(LinearEnsemble(width, size, k=cfg.k) for size in output_sizes.values())

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.inputs is not None:
            x = self.inputs(x)
        shared = self.trunk(self.ensemble_view(x))  # (B, k, hidden[-1])
        members = [head(shared) for head in self.heads]  # (B, k, n_outputs) each
        if self.training:
            return dict(zip(self.targets, members))
        return {target: out.mean(dim=1) if regression else torch.logsumexp(out.log_softmax(dim=-1), dim=1) - math.log(self.k)
                for target, out, regression in zip(self.targets, members, self.regression)}

    @torch.no_grad()
    def member_outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each member's prediction (B, k, n_outputs), in eval mode: class probabilities or regression values."""
        was_training = self.training
        self.train()
        for module in self.modules():  # train mode only for the head shapes: dropout stays off
            if isinstance(module, nn.Dropout):
                module.eval()
        try:
            members = self(x)
        finally:
            self.train(was_training)
        return {target: out if regression else out.softmax(dim=-1)
                for (target, out), regression in zip(members.items(), self.regression)}

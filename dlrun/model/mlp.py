"""Stage 3: the network. A shared MLP trunk and one linear head per target; heads return logits or scaled values.

`build_model` picks the family: the plain MLP (reads the encoded matrix as it is; the fast step covers it), the MLP
behind an input stage (numeric or categorical embeddings, embeddings.py), or TabM (tabm.py)."""

from __future__ import annotations

import torch
from torch import nn

from dlrun.config.schema import ModelConfig
from dlrun.data.scaling import InputLayout
from dlrun.model.activations import INIT_NONLINEARITY
from dlrun.model.embeddings import FeatureInputs, needs_inputs
from dlrun.model.layers import TrunkAndHeads, hidden_stack


class MLP(TrunkAndHeads, nn.Module):
    """x (B, n_features) -> {target: (B, n_outputs)}; no output activation, losses take logits."""

    def __init__(self, n_features: int, output_sizes: dict[str, int], cfg: ModelConfig):
        super().__init__()
        self.trunk, width = hidden_stack(cfg, n_features, lambda index, n_in, n_out: nn.Linear(n_in, n_out))
        # A list, not a ModuleDict: target names such as `type` or `a.b` are not valid module attribute names.
        self.targets = list(output_sizes)
        self.heads = nn.ModuleList(nn.Linear(width, size) for size in output_sizes.values())

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        shared = self.trunk(x)  # (B, hidden[-1])
        return {target: head(shared) for target, head in zip(self.targets, self.heads)}


class EmbeddedMLP(MLP):
    """The MLP behind a FeatureInputs stage: x (B, n_features) -> embedded (B, d) -> trunk -> heads."""

    autograd_only = "numeric or categorical embeddings (model.num_embeddings, preprocess.embed_categories_above)"

    def __init__(self, layout: InputLayout, output_sizes: dict[str, int], cfg: ModelConfig):
        inputs = FeatureInputs(layout, cfg)
        super().__init__(inputs.d_out, output_sizes, cfg)
        self.inputs = inputs

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return super().forward(self.inputs(x))


def build_model(n_features: int, output_sizes: dict[str, int], cfg: ModelConfig, seed: int,
                layout: InputLayout | None = None) -> nn.Module:
    """Build the configured family with weights drawn from `seed`, leaving the global RNG as it was.

    `layout` (Preprocessor.input_layout) says where numeric, one-hot and category-code columns sit; the plain MLP
    does not need it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if cfg.type == "tabm":
            # Imported here: the tabm package loads rtdl_num_embeddings and with it scikit-learn (start-up time).
            from dlrun.model.tabm import TabM

            return TabM(n_features, output_sizes, cfg, layout)  # TabM's own initialisation
        if needs_inputs(layout, cfg):
            assert layout is not None, "embeddings need the input layout"
            model: MLP = EmbeddedMLP(layout, output_sizes, cfg)
        else:
            model = MLP(n_features, output_sizes, cfg)
        _initialise(model, cfg)
    return model


def _initialise(model: nn.Module, cfg: ModelConfig) -> None:
    """Re-draw Linear weights (and zero biases) as the config asks; `default` keeps PyTorch's own init."""
    nonlinearity = INIT_NONLINEARITY[cfg.activation]
    slope = {"a": cfg.leaky_relu_slope} if cfg.activation == "leaky_relu" else {}
    gain = nn.init.calculate_gain(nonlinearity, cfg.leaky_relu_slope if cfg.activation == "leaky_relu" else None)
    for module in model.modules():
        if not isinstance(module, nn.Linear):
            continue
        if cfg.init == "uniform":
            nn.init.uniform_(module.weight, -cfg.init_range, cfg.init_range)
        elif cfg.init == "normal":
            nn.init.normal_(module.weight, std=cfg.init_std)
        elif cfg.init == "xavier_uniform":
            nn.init.xavier_uniform_(module.weight, gain=gain)
        elif cfg.init == "xavier_normal":
            nn.init.xavier_normal_(module.weight, gain=gain)
        elif cfg.init == "kaiming_uniform":
            nn.init.kaiming_uniform_(module.weight, nonlinearity=nonlinearity, **slope)
        elif cfg.init == "kaiming_normal":
            nn.init.kaiming_normal_(module.weight, nonlinearity=nonlinearity, **slope)
        if cfg.bias_init == "zero":
            nn.init.zeros_(module.bias)

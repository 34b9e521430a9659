"""The input stage of models that do more than read the encoded matrix as it is: numeric embeddings and learned
embeddings of high-cardinality categoricals.

The numeric embeddings are the authors' own (`rtdl_num_embeddings`, Gorishniy et al. 2022): periodic = PLR
(sin/cos of learned frequencies, then Linear + ReLU); piecewise_linear = PLE over quantile bins fitted on the
training split (preprocess.json holds them), then a Linear.
"""

from __future__ import annotations

import torch
from torch import nn

from dlrun.config.schema import ModelConfig
from dlrun.data.scaling import EMBEDDED_CATEGORY_DIM, InputLayout


def needs_inputs(layout: InputLayout | None, cfg: ModelConfig) -> bool:
    """Whether the model needs a FeatureInputs stage; without one it reads the encoded matrix directly."""
    return cfg.num_embeddings != "none" or bool(layout and layout.cardinalities)


class FeatureInputs(nn.Module):
    """X (B, n_features) laid out as `layout` says -> (B, d_out): numeric columns embedded (or passed through),
    one-hot blocks passed through, category codes looked up in one embedding table per feature."""

    def __init__(self, layout: InputLayout, cfg: ModelConfig):
        # Imported here: rtdl_num_embeddings loads scikit-learn's tree module, a second of start-up no plain MLP needs.
        from rtdl_num_embeddings import PeriodicEmbeddings, PiecewiseLinearEmbeddings

        super().__init__()
        self.n_numeric, self.n_onehot = layout.n_numeric, layout.n_onehot
        self.numeric: nn.Module | None = None
        d_numeric = 1
        if cfg.num_embeddings != "none" and self.n_numeric:
            d_numeric = cfg.embedding_dim
            if cfg.num_embeddings == "periodic":
                self.numeric = PeriodicEmbeddings(self.n_numeric, cfg.embedding_dim, lite=False)
            else:
                assert layout.bins is not None and len(layout.bins) == self.n_numeric, "bins are fitted before the model is built"
                bins = [torch.tensor(edges, dtype=torch.float32) for edges in layout.bins]
                self.numeric = PiecewiseLinearEmbeddings(bins, cfg.embedding_dim, activation=False, version="B")
        # Row 0 of each table is the unseen category (code 0).
        self.categories = nn.ModuleList(nn.Embedding(n + 1, EMBEDDED_CATEGORY_DIM) for n in layout.cardinalities)
        # The width each original feature takes in the output, in order: TabM initialises its first scaling per chunk.
        self.chunks = [d_numeric] * self.n_numeric + [1] * self.n_onehot + [EMBEDDED_CATEGORY_DIM] * len(layout.cardinalities)
        self.d_out = sum(self.chunks)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        parts = []
        numeric = X[:, : self.n_numeric]  # (B, n_numeric)
        if self.n_numeric:
            parts.append(numeric if self.numeric is None else self.numeric(numeric).flatten(1))  # (B, n_numeric * d)
        if self.n_onehot:
            parts.append(X[:, self.n_numeric : self.n_numeric + self.n_onehot])
        codes = X[:, self.n_numeric + self.n_onehot :].long()  # (B, n_embedded), exact: codes are small integers
        parts.extend(table(codes[:, i]) for i, table in enumerate(self.categories))  # (B, 8) each
        return torch.cat(parts, dim=1)

"""A seeded shuffle buffer: training rows arrive a chunk at a time (a streamed table) and leave in random batches.

The buffer holds up to `capacity` rows. Each arriving chunk joins it; then whole batches are drawn at random from all
the rows held until `capacity` are left, so a row can leave in any later batch, not only with its own chunk. At the
end the rest leaves in random order (the last batch may be short). The draws come from one torch.Generator: the same
seed and the same chunks give the same batches, and the generator's state resumes the order exactly.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import torch

from dlrun.data.tensors import Split


class ShuffleBuffer:
    def __init__(self, capacity: int, batch_size: int, generator: torch.Generator | None):
        self.capacity, self.batch_size, self.generator = capacity, batch_size, generator  # None: keep the table's order

    def batches(self, chunks: Iterable[Split]) -> Iterator[Split]:
        """Batches of batch_size rows (the last may be short) from the chunks' rows."""
        held: Split | None = None
        for chunk in chunks:
            held = chunk if held is None else _joined(held, chunk)
            n_out = (len(held) - self.capacity) // self.batch_size * self.batch_size
            if n_out > 0:
                order = self._order(len(held))
                yield from self._slices(_taken(held, order[:n_out]))
                held = _taken(held, order[n_out:])
        if held is not None and len(held):
            yield from self._slices(_taken(held, self._order(len(held))))

    def _order(self, n: int) -> torch.Tensor:
        if self.generator is None:
            return torch.arange(n)
        return torch.randperm(n, generator=self.generator)

    def _slices(self, rows: Split) -> Iterator[Split]:
        for start in range(0, len(rows), self.batch_size):
            yield Split(rows.X[start : start + self.batch_size], {t: v[start : start + self.batch_size] for t, v in rows.y.items()})


def _joined(a: Split, b: Split) -> Split:
    return Split(torch.cat([a.X, b.X]), {t: torch.cat([a.y[t], b.y[t]]) for t in a.y})


def _taken(rows: Split, order: torch.Tensor) -> Split:
    order = order.to(rows.X.device)
    return Split(rows.X[order], {t: v[order] for t, v in rows.y.items()})

"""Which training examples each member of a pack sees at each update.

Member k trains on the first n_k examples (its `dataset.train_subset`, else all) in mini-batches of
B, reshuffled every epoch; a partial last batch is dropped. The order of epoch e is a function of
(seed, e) alone, so a resumed run sees exactly the batches of an uninterrupted one, on any device,
and a member's batches never depend on its pack mates.
"""

from __future__ import annotations

import numpy as np
import torch


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of epoch `epoch` of n examples."""
    state = int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])
    return torch.randperm(n, generator=torch.Generator().manual_seed(state))


class MemberBatches:
    """Example indices of one member's mini-batches."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.per_epoch = n // batch_size  # updates per epoch
        self._cache: dict[int, np.ndarray] = {}

    def _epoch(self, e: int) -> np.ndarray:
        if e not in self._cache:
            self._cache = {e: epoch_permutation(self.n, self.seed, e).numpy()[: self.per_epoch * self.batch_size]}
        return self._cache[e]

    def indices(self, start: int, count: int) -> np.ndarray:
        """[count, B] indices of updates start, start + 1, ..."""
        first, last = start // self.per_epoch, (start + count - 1) // self.per_epoch
        stream = np.concatenate([self._epoch(e) for e in range(first, last + 1)])
        offset = (start - first * self.per_epoch) * self.batch_size
        return stream[offset: offset + count * self.batch_size].reshape(count, self.batch_size)


class PackBatches:
    """Indices for a whole pack: [count, K, B]."""

    def __init__(self, sizes: list[int], batch_size: int, seeds: list[int]) -> None:
        self.members = [MemberBatches(n, batch_size, s) for n, s in zip(sizes, seeds)]

    def indices(self, start: int, count: int) -> np.ndarray:
        return np.stack([m.indices(start, count) for m in self.members], axis=1)

"""Dropout masks for the members of a pack that use dropout, each drawn from its own generator.

A member's masks must depend on its own seed alone, never on its pack mates, so every member that
uses dropout has its own generator and one draw per update fills its slice of a uniform buffer
[n, B, D] (n: the members with dropout; D: the input plus every hidden layer's units). Members
without dropout draw nothing and are multiplied by nothing. The generators are reseeded from
(seed, update) at the start of every evaluation interval, so a run resumed from a checkpoint draws
exactly the masks an uninterrupted run draws, and no generator state needs saving. Under a CUDA
graph the generators are registered with it (see `update.register_generators`), so the same
reseeding works under replay.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .schema import DropoutConfig
from .regularizers import Slots

_DROPOUT_STREAM = 0x64726F70  # "drop": keeps the mask seeds apart from other uses of the run's seed


def block_seed(seed: int, update: int) -> int:
    """The dropout seed of the evaluation interval that starts at `update`."""
    state = np.random.SeedSequence([seed, _DROPOUT_STREAM, update]).generate_state(1, dtype=np.uint64)[0]
    return int(state) & (2**63 - 1)


class PackedDropout(nn.Module):
    def __init__(self, configs: list[DropoutConfig], widths: list[int], batch_size: int) -> None:
        """`widths`: the input width, then each hidden layer's (the units dropout acts on)."""
        super().__init__()
        self.widths, self.members = widths, len(configs)
        per_site = [[c.input_retain] + [c.hidden_retain] * (len(widths) - 1) for c in configs]
        self.drawing = [k for k, ps in enumerate(per_site) if any(p < 1.0 for p in ps)]
        self.slots = Slots(self.drawing) if self.drawing else None
        self.everyone = self.drawing == list(range(len(configs)))
        retain = torch.tensor([[p for p, w in zip(per_site[k], widths) for _ in range(w)] for k in self.drawing]
                              or [[1.0] * sum(widths)])
        self.register_buffer("retain", retain.unsqueeze(1), persistent=False)  # [n, 1, D]
        self.register_buffer("scale", 1.0 / retain.unsqueeze(1), persistent=False)
        self.register_buffer("uniform", torch.zeros(len(self.drawing), batch_size, sum(widths)), persistent=False)
        self.generators: list[torch.Generator] = []
        self._masks: list[torch.Tensor] = []

    @property
    def active(self) -> bool:
        return bool(self.drawing)

    def reseed(self, seeds: list[int], update: int) -> None:
        """Start the interval beginning at `update` (seeds: every member's run seed)."""
        if len(self.generators) != len(self.drawing):
            self.generators = [torch.Generator(device=self.uniform.device) for _ in self.drawing]
        for gen, k in zip(self.generators, self.drawing):
            gen.manual_seed(block_seed(seeds[k], update))

    def draw(self) -> None:
        """This update's masks (0 or 1/p) for every dropout site, kept for `apply`."""
        for i, gen in enumerate(self.generators):
            torch.rand(self.uniform[i].shape, generator=gen, out=self.uniform[i])
        masks = (self.uniform < self.retain).to(self.uniform.dtype) * self.scale
        self._masks = list(masks.split(self.widths, dim=2))

    def apply(self, site: int, h: torch.Tensor) -> torch.Tensor:
        """Units h [K, B, width] of dropout site `site` (0: the input) with this update's masks."""
        if not self.drawing:
            return h
        mask = self._masks[site]
        if self.everyone:
            return h * mask
        return h.index_put((self.slots.index,), self.slots.take(h) * mask)

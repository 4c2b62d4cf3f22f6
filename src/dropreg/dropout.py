"""Dropout masks for a pack, each member's drawn from its own random generator.

A member's masks must depend on its own seed alone, never on its pack mates, so every member that
uses dropout has its own generator and one draw per update fills its slice of a uniform buffer
[K, B, D] (D: the input plus every hidden layer's units). Members without dropout keep zeros there,
which their retain probability of 1 turns into masks of ones. The generators are reseeded from
(seed, update) at the start of every evaluation interval, so a run resumed from a checkpoint draws
exactly the masks an uninterrupted run draws, and no generator state needs saving. On CUDA each
generator is registered with the captured graph (PyTorch reads a registered generator's seed and
offset at every replay), so the same reseeding works under graph replay.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .config import DropoutConfig

_DROPOUT_STREAM = 0x64726F70  # "drop": keeps the mask seeds apart from other uses of the run's seed


def block_seed(seed: int, update: int) -> int:
    """The dropout seed of the evaluation interval that starts at `update`."""
    state = np.random.SeedSequence([seed, _DROPOUT_STREAM, update]).generate_state(1, dtype=np.uint64)[0]
    return int(state) & (2**63 - 1)


class PackedDropout(nn.Module):
    def __init__(self, configs: list[DropoutConfig], widths: list[int], batch_size: int) -> None:
        """`widths`: the input width, then each hidden layer's (the units dropout acts on)."""
        super().__init__()
        self.widths = widths
        per_site = [[c.input_retain] + [c.hidden_retain] * (len(widths) - 1) for c in configs]
        self.drawing = [k for k, ps in enumerate(per_site) if any(p < 1.0 for p in ps)]
        retain = torch.tensor([[p for p, w in zip(ps, widths) for _ in range(w)] for ps in per_site])
        self.register_buffer("retain", retain.unsqueeze(1), persistent=False)  # [K, 1, D]
        self.register_buffer("scale", 1.0 / retain.unsqueeze(1), persistent=False)
        self.register_buffer("uniform", torch.zeros(len(configs), batch_size, sum(widths)), persistent=False)
        self.generators: list[torch.Generator] = []

    @property
    def active(self) -> bool:
        return bool(self.drawing)

    def reseed(self, seeds: list[int], update: int) -> None:
        """Start the interval beginning at `update` (seeds: every member's run seed)."""
        if len(self.generators) != len(self.drawing):
            self.generators = [torch.Generator(device=self.uniform.device) for _ in self.drawing]
        for gen, k in zip(self.generators, self.drawing):
            gen.manual_seed(block_seed(seeds[k], update))

    def draw(self) -> list[torch.Tensor]:
        """One update's masks: a list over the dropout sites of [K, B, width] (0 or 1/p)."""
        for gen, k in zip(self.generators, self.drawing):
            torch.rand(self.uniform[k].shape, generator=gen, out=self.uniform[k])
        masks = (self.uniform < self.retain).to(self.uniform.dtype) * self.scale
        return list(masks.split(self.widths, dim=2))

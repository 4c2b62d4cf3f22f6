"""Learning-rate and momentum as functions of the number of weight updates t done so far.

`lr_factor`/`momentum_at` are the definitions, one run at a time in plain Python (the benchmark's
independent loop uses them); `PackedSchedules` computes the same values for every member of a pack
as device tensors, so a captured CUDA graph can evaluate them at every replay without the host.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .schema import LRSchedule, MomentumSchedule, OptimConfig


def lr_factor(cfg: OptimConfig, t: int) -> float:
    """Multiplier of the base learning rate: 1, or the inverse-time decay 1 / (1 + t/T)."""
    if LRSchedule(cfg.lr_schedule) is LRSchedule.inverse_time:
        return 1.0 / (1.0 + t / cfg.lr_decay_updates)
    return 1.0


def momentum_at(cfg: OptimConfig, t: int) -> float:
    """Constant momentum, or deepnet's ramp m = m_f − (m_f − m_i)·exp(−t/T) from m_i to m_f."""
    if MomentumSchedule(cfg.momentum_schedule) is MomentumSchedule.ramp:
        m_i, m_f = cfg.momentum, cfg.final_momentum
        return m_f - (m_f - m_i) * math.exp(-t / cfg.momentum_ramp_updates)
    return cfg.momentum


class PackedSchedules(nn.Module):
    """lr(t) = lr0 / (1 + t·a) and m(t) = m_f − (m_f − m_i)·exp(−t·b) for every member at once
    (a = 1/T for inverse-time decay, else 0; b = 1/T of the ramp, and m_i = m_f for constant momentum)."""

    def __init__(self, configs: list[OptimConfig]) -> None:
        super().__init__()

        def vec(values) -> torch.Tensor:
            return torch.tensor(list(values), dtype=torch.float32)

        inverse = [LRSchedule(c.lr_schedule) is LRSchedule.inverse_time for c in configs]
        ramp = [MomentumSchedule(c.momentum_schedule) is MomentumSchedule.ramp for c in configs]
        self.register_buffer("lr0", vec(c.lr for c in configs), persistent=False)
        self.register_buffer("lr_rate", vec(1.0 / c.lr_decay_updates if i else 0.0 for c, i in zip(configs, inverse)),
                             persistent=False)
        self.register_buffer("m_initial", vec(c.momentum for c in configs), persistent=False)
        self.register_buffer("m_final", vec(c.final_momentum if r else c.momentum for c, r in zip(configs, ramp)),
                             persistent=False)
        self.register_buffer("m_rate", vec(1.0 / c.momentum_ramp_updates if r else 0.0 for c, r in zip(configs, ramp)),
                             persistent=False)

    def lr(self, t: torch.Tensor) -> torch.Tensor:
        return self.lr0 / (1.0 + t * self.lr_rate)

    def momentum(self, t: torch.Tensor) -> torch.Tensor:
        return self.m_final - (self.m_final - self.m_initial) * torch.exp(-t * self.m_rate)

"""Learning-rate and momentum as functions of the number of weight updates t done so far."""

from __future__ import annotations

import math

from .config import LRSchedule, MomentumSchedule, OptimConfig


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

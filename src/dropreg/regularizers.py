"""Penalties added to the training loss, and constraints applied after each update.

A new regularizer is one small class here plus one YAML file in conf/regularizer/. Penalties act in
training only (the module adds them to the data loss in `training_step`); each is logged on its own.

Definitions (λ, β, ρ, c are the config values; sums run over every Linear layer of the net):
- L2, form `sum`        λ Σ w²              (Keras `L2(l2=λ)`)
- L2, form `half_sum`   λ · ½ Σ w²          (TensorFlow `λ * tf.nn.l2_loss(w)`, as in the seeds)
- L1                    λ Σ |w|              (Keras `L1(l1=λ)`), optionally only from a late update on
- biases are included in L1/L2 only with `include_biases: true`
- KL-sparsity           β Σ_j KL(ρ ‖ ρ̂_j),  KL(ρ‖q) = ρ log(ρ/q) + (1−ρ) log((1−ρ)/(1−q)),
  summed over every hidden unit j of every hidden layer, where ρ̂_j is the unit's mean "activity"
  over the mini-batch. Logistic units: activity = the activation itself (in (0, 1), the classic
  sparse-autoencoder definition). ReLU units are unbounded, so their activity is 1 − exp(−a), which
  maps a ≥ 0 smoothly onto [0, 1), equals a for small a and saturates for large a. ρ̂ is clipped
  to [1e-6, 1 − 1e-6] so the logarithms stay finite.
- Max-norm              after every optimizer step, each hidden unit's incoming weight vector w_j
  (a row of its layer's weight matrix) is scaled to ‖w_j‖₂ = c if it is longer; shorter ones are
  left untouched. The output layer is not constrained (the paper constrains hidden units).
"""

from __future__ import annotations

import math
from typing import Iterator, Optional

import torch
from torch import nn

from .config import Activation, L2Form, RegularizerConfig

_EPS = 1e-6


def _penalized(model: nn.Module, include_biases: bool) -> Iterator[torch.Tensor]:
    for layer in model.linear_layers:
        yield layer.weight
        if include_biases:
            yield layer.bias


class L2Penalty:
    name = "l2"
    needs_hidden = False

    def __init__(self, weight: float, form: L2Form = L2Form.sum, include_biases: bool = False) -> None:
        self.scale = weight * (0.5 if L2Form(form) is L2Form.half_sum else 1.0)
        self.include_biases = include_biases

    def __call__(self, model: nn.Module, hidden: list[torch.Tensor], update: int) -> torch.Tensor:
        return self.scale * sum(p.square().sum() for p in _penalized(model, self.include_biases))


class L1Penalty:
    name = "l1"
    needs_hidden = False

    def __init__(self, weight: float, include_biases: bool = False, start_update: int = 0) -> None:
        self.weight = weight
        self.include_biases = include_biases
        self.start_update = start_update

    def __call__(self, model: nn.Module, hidden: list[torch.Tensor], update: int) -> Optional[torch.Tensor]:
        if update < self.start_update:
            return None
        return self.weight * sum(p.abs().sum() for p in _penalized(model, self.include_biases))


class KLSparsityPenalty:
    name = "kl_sparsity"
    needs_hidden = True

    def __init__(self, weight: float, target: float, activation: Activation) -> None:
        self.weight = weight
        self.target = target
        self.activation = Activation(activation)

    def activity(self, a: torch.Tensor) -> torch.Tensor:
        """Per-unit activity in [0, 1): see the module docstring."""
        return a if self.activation is Activation.logistic else -torch.expm1(-a)

    def __call__(self, model: nn.Module, hidden: list[torch.Tensor], update: int) -> torch.Tensor:
        rho = self.target
        total = 0.0
        for a in hidden:
            q = self.activity(a).mean(dim=0).clamp(_EPS, 1.0 - _EPS)
            total = total + (rho * torch.log(rho / q) + (1 - rho) * torch.log((1 - rho) / (1 - q))).sum()
        return self.weight * total


class MaxNormConstraint:
    name = "max_norm"

    def __init__(self, radius: float) -> None:
        self.radius = radius

    @torch.no_grad()
    def apply(self, model: nn.Module) -> None:
        for layer in model.hidden_layers:
            # rows of weight [out, in] are the units' incoming vectors; renorm_ leaves short rows as they are
            layer.weight.renorm_(p=2, dim=0, maxnorm=self.radius)


def build_penalties(cfg: RegularizerConfig, activation: Activation, max_updates: int) -> list:
    """The active penalties of a regularizer config (weight 0 means off)."""
    penalties: list = []
    if cfg.l2.weight > 0:
        penalties.append(L2Penalty(cfg.l2.weight, cfg.l2.form, cfg.l2.include_biases))
    if cfg.l1.weight > 0:
        start = math.floor(cfg.l1.start_fraction * max_updates)
        penalties.append(L1Penalty(cfg.l1.weight, cfg.l1.include_biases, start))
    if cfg.kl_sparsity.weight > 0:
        penalties.append(KLSparsityPenalty(cfg.kl_sparsity.weight, cfg.kl_sparsity.target, activation))
    return penalties


def build_constraints(cfg: RegularizerConfig) -> list[MaxNormConstraint]:
    return [MaxNormConstraint(cfg.max_norm.radius)] if cfg.max_norm.radius is not None else []

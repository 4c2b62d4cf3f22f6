"""Penalties added to the training loss, and the constraint applied after each update, for a pack.

Each regularizer is one small module holding its settings for every member of a pack as tensors
[K] (a member that does not use it has coefficient 0, or radius inf for max-norm), so one call
computes all members' values at once and every member's value depends on its own weights only.
A new regularizer is one class here, its settings in `config.RegularizerConfig`, an entry in
`build_penalties`/`build_constraints`, and one YAML file in conf/regularizer/.

Definitions (λ, β, ρ, c are the config values; sums run over every layer of the member's net):
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

A penalty returns (value [K], active [K]): `active` says which members had it switched on at this
update (the late L1 is off before its start); values are logged per member as train/penalty_<name>.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import Activation, L2Form, RegularizerConfig
from .net import PackedMLP

_EPS = 1e-6


def _vector(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


class L2Penalty(nn.Module):
    name = "l2"
    needs_hidden = False

    def __init__(self, configs: list[RegularizerConfig], activation: Activation, max_updates: int) -> None:
        super().__init__()
        coef = [c.l2.weight * (0.5 if L2Form(c.l2.form) is L2Form.half_sum else 1.0) for c in configs]
        self.register_buffer("weight_coef", _vector(coef), persistent=False)
        self.register_buffer("bias_coef", _vector([w if c.l2.include_biases else 0.0 for w, c in zip(coef, configs)]),
                             persistent=False)
        self.register_buffer("on", _vector([1.0 if w > 0 else 0.0 for w in coef]), persistent=False)
        self.biases = any(c.l2.include_biases for c in configs)

    @staticmethod
    def used_by(cfg: RegularizerConfig) -> bool:
        return cfg.l2.weight > 0

    def forward(self, net: PackedMLP, hidden: list[torch.Tensor], update: torch.Tensor):
        value = self.weight_coef * sum(layer.weight.square().sum((1, 2)) for layer in net.layers)
        if self.biases:
            value = value + self.bias_coef * sum(layer.bias.square().sum(1) for layer in net.layers)
        return value, self.on


class L1Penalty(nn.Module):
    name = "l1"
    needs_hidden = False

    def __init__(self, configs: list[RegularizerConfig], activation: Activation, max_updates: int) -> None:
        super().__init__()
        coef = [c.l1.weight for c in configs]
        self.register_buffer("weight_coef", _vector(coef), persistent=False)
        self.register_buffer("bias_coef", _vector([w if c.l1.include_biases else 0.0 for w, c in zip(coef, configs)]),
                             persistent=False)
        # the first update with L1 on: L1 acts during the last (1 - start_fraction) of the budget
        start = [math.floor(c.l1.start_fraction * max_updates) if c.l1.weight > 0 else max_updates + 1
                 for c in configs]
        self.register_buffer("start_update", torch.tensor(start, dtype=torch.long), persistent=False)
        self.biases = any(c.l1.include_biases for c in configs)

    @staticmethod
    def used_by(cfg: RegularizerConfig) -> bool:
        return cfg.l1.weight > 0

    def forward(self, net: PackedMLP, hidden: list[torch.Tensor], update: torch.Tensor):
        on = (update >= self.start_update).to(self.weight_coef.dtype)
        value = self.weight_coef * sum(layer.weight.abs().sum((1, 2)) for layer in net.layers)
        if self.biases:
            value = value + self.bias_coef * sum(layer.bias.abs().sum(1) for layer in net.layers)
        return on * value, on


class KLSparsityPenalty(nn.Module):
    name = "kl_sparsity"
    needs_hidden = True

    def __init__(self, configs: list[RegularizerConfig], activation: Activation, max_updates: int) -> None:
        super().__init__()
        self.activation = Activation(activation)
        self.register_buffer("weight_coef", _vector([c.kl_sparsity.weight for c in configs]), persistent=False)
        self.register_buffer("target", _vector([c.kl_sparsity.target for c in configs]).unsqueeze(1),
                             persistent=False)
        self.register_buffer("on", (self.weight_coef > 0).float(), persistent=False)

    @staticmethod
    def used_by(cfg: RegularizerConfig) -> bool:
        return cfg.kl_sparsity.weight > 0

    def activity(self, a: torch.Tensor) -> torch.Tensor:
        """Per-unit activity in [0, 1): see the module docstring."""
        return a if self.activation is Activation.logistic else -torch.expm1(-a)

    def forward(self, net: PackedMLP, hidden: list[torch.Tensor], update: torch.Tensor):
        rho = self.target  # [K, 1]
        total = 0.0
        for a in hidden:  # [K, B, H]
            q = self.activity(a.float()).mean(dim=1).clamp(_EPS, 1.0 - _EPS)  # [K, H]
            kl = rho * torch.log(rho / q) + (1 - rho) * torch.log((1 - rho) / (1 - q))
            total = total + kl.sum(dim=1)
        return self.weight_coef * total, self.on


class MaxNormConstraint(nn.Module):
    name = "max_norm"

    def __init__(self, configs: list[RegularizerConfig]) -> None:
        super().__init__()
        radius = [c.max_norm.radius if c.max_norm.radius is not None else math.inf for c in configs]
        self.register_buffer("radius", _vector(radius).view(-1, 1, 1), persistent=False)

    @staticmethod
    def used_by(cfg: RegularizerConfig) -> bool:
        return cfg.max_norm.radius is not None

    @torch.no_grad()
    def apply(self, net: PackedMLP) -> None:
        for layer in net.hidden_layers:
            # columns of weight [K, in, out] are the units' incoming vectors; those inside the ball
            # keep factor 1 (also every unit of members without the constraint: c = inf)
            # (sqrt of a sum of squares: 10x faster than torch.norm over a non-contiguous dim)
            norms = layer.weight.square().sum(dim=1, keepdim=True).sqrt()
            layer.weight.mul_(torch.clamp(self.radius / norms, max=1.0))


PENALTIES = (L2Penalty, L1Penalty, KLSparsityPenalty)


def build_penalties(configs: list[RegularizerConfig], activation: Activation, max_updates: int) -> list[nn.Module]:
    """The penalties that at least one member uses (the others get coefficient 0 in them)."""
    return [kind(configs, activation, max_updates) for kind in PENALTIES if any(kind.used_by(c) for c in configs)]


def build_constraints(configs: list[RegularizerConfig]) -> list[MaxNormConstraint]:
    return [MaxNormConstraint(configs)] if any(MaxNormConstraint.used_by(c) for c in configs) else []

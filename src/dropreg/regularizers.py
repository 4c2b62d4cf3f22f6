"""The regularizers of a pack: each acts on the members that use it, and only on them.

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
  is scaled to ‖w_j‖₂ = c if it is longer; shorter ones are left untouched. The output layer is not
  constrained (the paper constrains hidden units).

How they cost only what they must: every regularizer holds the `Slots` of the members that use it
(a slice of the pack when they are contiguous, which `pack_order` arranges; an index otherwise) and
its settings for those members only. The weight penalties are not differentiated by autograd:
their gradients (2λ'w for L2, λ·sign(w) for L1) are added to the momentum inside the optimizer's
step (`optim.PackedSGD`), and their values, which only the logs need, are computed at evaluations.
KL-sparsity depends on the batch's activations, so it is part of the loss and goes through
autograd, for its members only.

A new regularizer: a class here holding its members' settings, its settings in
`config.RegularizerConfig`, an entry in `build_regularizers` and `NEEDS`, a YAML in conf/regularizer/.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable, Optional

import torch
from torch import nn

from .schema import Activation, L2Form, RegularizerConfig
from .net import PackedMLP

_EPS = 1e-6


def _vector(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


class Slots(nn.Module):
    """Some slots of a pack, in order: `take` reads their part of a tensor [K, ...] (a view when the
    slots are contiguous), `add_` and `put_` write it back."""

    def __init__(self, indices: list[int]) -> None:
        super().__init__()
        self.indices = list(indices)
        self.contiguous = self.indices == list(range(self.indices[0], self.indices[-1] + 1))
        self.range = slice(self.indices[0], self.indices[-1] + 1)
        self.register_buffer("index", torch.tensor(self.indices, dtype=torch.long), persistent=False)

    def __len__(self) -> int:
        return len(self.indices)

    def take(self, t: torch.Tensor) -> torch.Tensor:
        return t[self.range] if self.contiguous else t.index_select(0, self.index)

    def add_(self, target: torch.Tensor, values: torch.Tensor) -> None:
        if self.contiguous:
            target[self.range].add_(values)
        else:
            target.index_add_(0, self.index, values)

    def put_(self, target: torch.Tensor, values: torch.Tensor) -> None:
        if self.contiguous:
            if values.data_ptr() != target[self.range].data_ptr():
                target[self.range].copy_(values)
        else:
            target.index_copy_(0, self.index, values)


def _shaped(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view((-1,) + (1,) * (like.dim() - 1))


# ----------------------------------------------------------------------------- weight penalties
class WeightPenalty(nn.Module):
    """λ_k · Σ f(w) over a member's weights (and biases, where asked), f = w² (L2) or |w| (L1)."""

    name = ""
    gradient_scale = 1.0  # d f(w)/dw = gradient_scale · df(w)

    def __init__(self, slots: list[int], weight: list[float], bias: list[float], start: list[int]) -> None:
        super().__init__()
        self.slots = Slots(slots)
        self.register_buffer("weight_coef", _vector(weight), persistent=False)
        self.register_buffer("bias_coef", _vector(bias), persistent=False)
        self.register_buffer("start_update", torch.tensor(start, dtype=torch.long), persistent=False)
        self.start = list(start)
        self.biases = any(b > 0 for b in bias)

    def on(self, update: torch.Tensor) -> torch.Tensor:
        """Which of its members have it switched on at this update (L1 may start late): [n] 0/1."""
        return (update >= self.start_update).to(self.weight_coef.dtype)

    def f(self, w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def df(self, w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def add_gradient_(self, buf: torch.Tensor, param: torch.Tensor, on: torch.Tensor, bias: bool) -> None:
        """buf[slots] += on · λ · f'(param[slots]) (the step's momentum buffer, before the update)."""
        if bias and not self.biases:
            return
        coef = _shaped(self.gradient_scale * on * (self.bias_coef if bias else self.weight_coef), param)
        part = self.slots.take(buf)
        part.addcmul_(self.df(self.slots.take(param)), coef)
        self.slots.put_(buf, part)

    @torch.no_grad()
    def value(self, net: PackedMLP, members: int) -> torch.Tensor:
        """Each member's penalty at the current weights, [K] (0 for members without it)."""
        total = 0.0
        for layer in net.layers:
            total = total + self.weight_coef * self.f(self.slots.take(layer.weight)).sum((1, 2))
            if self.biases:
                total = total + self.bias_coef * self.f(self.slots.take(layer.bias)).sum(1)
        out = torch.zeros(members, device=self.weight_coef.device)
        out.index_copy_(0, self.slots.index, total.float())
        return out


class L2Penalty(WeightPenalty):
    name = "l2"

    def f(self, w: torch.Tensor) -> torch.Tensor:
        return w.square()

    gradient_scale = 2.0

    def df(self, w: torch.Tensor) -> torch.Tensor:
        return w


class L1Penalty(WeightPenalty):
    name = "l1"

    def f(self, w: torch.Tensor) -> torch.Tensor:
        return w.abs()

    def df(self, w: torch.Tensor) -> torch.Tensor:
        return torch.sign(w)  # the subgradient 0 at w = 0, as autograd's abs gives


def _l2(configs: list[RegularizerConfig], max_updates: int) -> Optional[L2Penalty]:
    slots = [k for k, c in enumerate(configs) if c.l2.weight > 0]
    if not slots:
        return None
    coef = [configs[k].l2.weight * (0.5 if L2Form(configs[k].l2.form) is L2Form.half_sum else 1.0) for k in slots]
    bias = [w if configs[k].l2.include_biases else 0.0 for w, k in zip(coef, slots)]
    return L2Penalty(slots, coef, bias, [0] * len(slots))


def _l1(configs: list[RegularizerConfig], max_updates: int) -> Optional[L1Penalty]:
    slots = [k for k, c in enumerate(configs) if c.l1.weight > 0]
    if not slots:
        return None
    coef = [configs[k].l1.weight for k in slots]
    bias = [w if configs[k].l1.include_biases else 0.0 for w, k in zip(coef, slots)]
    # the first update with L1 on: it acts during the last (1 - start_fraction) of the budget
    start = [math.floor(configs[k].l1.start_fraction * max_updates) for k in slots]
    return L1Penalty(slots, coef, bias, start)


# ----------------------------------------------------------------------------- activity penalty
class KLSparsityPenalty(nn.Module):
    name = "kl_sparsity"

    def __init__(self, slots: list[int], weight: list[float], target: list[float], activation: Activation) -> None:
        super().__init__()
        self.slots = Slots(slots)
        self.activation = Activation(activation)
        self.register_buffer("weight_coef", _vector(weight), persistent=False)
        self.register_buffer("target", _vector(target).unsqueeze(1), persistent=False)

    def activity(self, a: torch.Tensor) -> torch.Tensor:
        """Per-unit activity in [0, 1): see the module docstring."""
        return a if self.activation is Activation.logistic else -torch.expm1(-a)

    def forward(self, hidden: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Its members' penalties [n] from every hidden layer's activations [K, B, H], and their mean
        activity ρ̂ over all hidden units [n] (what the penalty pulls towards `target`)."""
        rho = self.target  # [n, 1]
        total, activity, units = 0.0, 0.0, 0
        for a in hidden:
            q = self.activity(self.slots.take(a).float()).mean(dim=1).clamp(_EPS, 1.0 - _EPS)  # [n, H]
            kl = rho * torch.log(rho / q) + (1 - rho) * torch.log((1 - rho) / (1 - q))
            total = total + kl.sum(dim=1)
            activity, units = activity + q.detach().sum(dim=1), units + q.shape[1]
        return self.weight_coef * total, activity / units


def _kl(configs: list[RegularizerConfig], activation: Activation) -> Optional[KLSparsityPenalty]:
    slots = [k for k, c in enumerate(configs) if c.kl_sparsity.weight > 0]
    if not slots:
        return None
    return KLSparsityPenalty(slots, [configs[k].kl_sparsity.weight for k in slots],
                             [configs[k].kl_sparsity.target for k in slots], activation)


# ----------------------------------------------------------------------------- max-norm
def column_norms(w: torch.Tensor, rows: int = 32, block_bytes: int = 1 << 20) -> torch.Tensor:
    """‖w[k, :, j]‖₂ for weight [n, in, out]: [n, 1, out]. On CUDA one reduction; on the CPU the
    squares are summed in blocks of `rows` rows and a few members at a time, so no weight-sized
    temporary is made and the sums stay in cache (2x faster here). The block shape does not depend
    on n, so a member's norms are the same bits whatever its pack."""
    if w.is_cuda:
        return torch.linalg.vector_norm(w, dim=1, keepdim=True)
    n, n_in, n_out = w.shape
    out = torch.zeros(n, 1, n_out, dtype=w.dtype)
    group = max(1, block_bytes // (rows * n_out * w.element_size()))
    for k in range(0, n, group):
        acc = out[k:k + group]
        for r in range(0, n_in, rows):
            block = w[k:k + group, r:r + rows]
            acc.add_(torch.mul(block, block).sum(1, keepdim=True))
    return out.sqrt_()


class MaxNormConstraint(nn.Module):
    name = "max_norm"

    def __init__(self, slots: list[int], radius: list[float]) -> None:
        super().__init__()
        self.slots = Slots(slots)
        self.register_buffer("radius", _vector(radius).view(-1, 1, 1), persistent=False)

    @torch.no_grad()
    def apply(self, net: PackedMLP) -> None:
        for layer in net.hidden_layers:
            # columns of weight [K, in, out] are the units' incoming vectors; those inside the ball
            # keep factor 1
            w = self.slots.take(layer.weight)
            w.mul_(torch.clamp(self.radius / column_norms(w), max=1.0))
            self.slots.put_(layer.weight, w)

    @torch.no_grad()
    def at_bound(self, net: PackedMLP, members: int, tolerance: float = 1e-3) -> torch.Tensor:
        """Each member's fraction of hidden units whose incoming norm is at the radius, [K] (nan for
        members without the constraint): a constraint that never binds does nothing."""
        bound, units = 0.0, 0
        for layer in net.hidden_layers:
            norms = column_norms(self.slots.take(layer.weight).float())
            bound = bound + (norms >= self.radius * (1 - tolerance)).sum((1, 2))
            units += layer.out_features
        out = torch.full((members,), float("nan"), device=self.radius.device)
        out.index_copy_(0, self.slots.index, bound.float() / units)
        return out


# |w| below this counts as "near zero" for L1 (init N(0, 1/fan_in) puts ~2 % of paper_mlp's weights there)
NEAR_ZERO = 1e-3


@torch.no_grad()
def weights_near_zero(net: PackedMLP, members: int) -> torch.Tensor:
    """Each member's fraction of weights (not biases) with |w| < NEAR_ZERO, [K]: what L1 should raise
    above the unregularized runs' value."""
    near, total = torch.zeros(members, device=net.layers[0].weight.device), 0
    for layer in net.layers:
        near += (layer.weight.abs() < NEAR_ZERO).flatten(1).sum(1)
        total += layer.weight[0].numel()
    return near / total


def _max_norm(configs: list[RegularizerConfig]) -> Optional[MaxNormConstraint]:
    slots = [k for k, c in enumerate(configs) if c.max_norm.radius is not None]
    return MaxNormConstraint(slots, [configs[k].max_norm.radius for k in slots]) if slots else None


# ----------------------------------------------------------------------------- the pack's set
class Regularizers(nn.Module):
    """What a pack's members use: weight penalties (gradients in the optimizer's step), an activity
    penalty (in the loss), max-norm (after the step)."""

    def __init__(self, configs: list[RegularizerConfig], activation: Activation, max_updates: int) -> None:
        super().__init__()
        self.weight_penalties = nn.ModuleList(p for p in (_l2(configs, max_updates), _l1(configs, max_updates))
                                              if p is not None)
        self.activity_penalties = nn.ModuleList(p for p in (_kl(configs, activation),) if p is not None)
        self.max_norm = _max_norm(configs)

    @property
    def penalty_names(self) -> list[str]:
        return [p.name for p in (*self.weight_penalties, *self.activity_penalties)]


# which members a regularizer (or dropout) acts on; `pack_order` makes each of these sets contiguous
NEEDS: dict[str, Callable[[RegularizerConfig], bool]] = {
    "l2": lambda c: c.l2.weight > 0,
    "l1": lambda c: c.l1.weight > 0,
    "kl_sparsity": lambda c: c.kl_sparsity.weight > 0,
    "max_norm": lambda c: c.max_norm.radius is not None,
    "dropout": lambda c: c.dropout.input_retain < 1.0 or c.dropout.hidden_retain < 1.0,
}


def pack_order(configs: list[RegularizerConfig]) -> list[int]:
    """An order of the members in which as many of the `NEEDS` sets as possible are contiguous (each
    then costs views, not gathers). Tries the sorts by every priority of the needs and keeps the best;
    a member's results do not depend on its slot, so any order is correct."""
    flags = [tuple(need(c) for need in NEEDS.values()) for c in configs]

    def contiguous_sets(order: list[int]) -> int:
        count = 0
        for n in range(len(NEEDS)):
            where = [i for i, k in enumerate(order) if flags[k][n]]
            count += not where or where[-1] - where[0] + 1 == len(where)
        return count

    best, best_score = list(range(len(configs))), -1
    for priority in itertools.permutations(range(len(NEEDS))):
        for flip in itertools.product((False, True), repeat=len(NEEDS) - 1):
            def key(k: int) -> tuple:
                # alternate directions, so that a set ends where the next one starts
                return tuple(flags[k][n] != f for n, f in zip(priority, (False, *flip)))
            order = sorted(range(len(configs)), key=key)
            score = contiguous_sets(order)
            if score > best_score:
                best, best_score = order, score
            if best_score == len(NEEDS):
                return best
    return best

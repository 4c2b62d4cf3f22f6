"""K multilayer perceptrons of one architecture as one batched network (a *pack*).

Every layer holds the weights of all K members in one tensor, weight [K, in, out] and bias [K, out]
(member k's `nn.Linear` weight is weight[k].T: the [in, out] layout spares the backward pass a
transposing copy, 9 ms per 2048x1024 layer on a CPU), and a training forward pass is one `baddbmm`
per layer for all members, each member on its own mini-batch: x [K, B, in]. No
operation mixes members, so member k's outputs and gradients are those of a lone net with its
weights; on one CPU thread they are bitwise the same whatever the pack size or the member's
position (tested; with several, MKL may split a pack of one's GEMM differently: last-bit noise).
Evaluation runs member by member on a shared input, which keeps that guarantee without
materializing K copies of a large evaluation batch.

Dropout (`dropreg.dropout`) is given as *retain* probabilities, as in the paper: training multiplies
units by a 0/1 mask scaled by 1/p (inverted dropout), the same expected activations as the paper's
scaling of the weights by p at test time; the eval-mode net is the plain one.
"""

from __future__ import annotations

import math
import torch
from torch import nn

from .schema import Activation, Init, ModelConfig

_ACTIVATIONS = {Activation.relu: torch.relu, Activation.logistic: torch.sigmoid}


class PackedLinear(nn.Module):
    def __init__(self, members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(members, in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(members, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [K, B, in] -> [K, B, out], each member with its own weights."""
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight)

    def member(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """Member k alone on x [N, in]."""
        return torch.addmm(self.bias[k], x, self.weight[k])


class PackedMLP(nn.Module):
    """input -> [dropout] -> (Linear -> activation -> [dropout]) x hidden -> Linear -> logits, K times."""

    def __init__(self, members: int, input_dim: int, hidden: list[int], num_classes: int,
                 activation: Activation) -> None:
        super().__init__()
        self.members = members
        self.activation = Activation(activation)
        self.widths = [input_dim, *hidden, num_classes]
        self.layers = nn.ModuleList(PackedLinear(members, a, b) for a, b in zip(self.widths[:-1], self.widths[1:]))

    @property
    def hidden_layers(self) -> list[PackedLinear]:
        return list(self.layers[:-1])

    @property
    def dropout_widths(self) -> list[int]:
        """Widths of the units that dropout acts on: the input, then every hidden layer."""
        return self.widths[:-1]

    def forward(self, x: torch.Tensor, dropout=None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x [K, B, in] -> logits [K, B, classes] and each hidden layer's activations (before dropout).

        `dropout` (a `PackedDropout` that has drawn this update's masks) acts on the input (site 0)
        and on the output of hidden layer i (site i); None trains without dropout."""
        act = _ACTIVATIONS[self.activation]
        h = x if dropout is None else dropout.apply(0, x)
        hidden = []
        for i, layer in enumerate(self.layers[:-1], start=1):
            a = act(layer(h))
            hidden.append(a)
            h = a if dropout is None else dropout.apply(i, a)
        return self.layers[-1](h), hidden

    def member_logits(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """Logits of member k alone for x [N, in], without dropout (evaluation)."""
        act = _ACTIVATIONS[self.activation]
        h = x
        for layer in self.layers[:-1]:
            h = act(layer.member(k, h))
        return self.layers[-1].member(k, h)

    @torch.no_grad()
    def init_member_(self, k: int, cfg: ModelConfig, seed: int) -> None:
        """Member k's weights from its own generator (a function of its seed alone), biases zero,
        as in both the paper's and the seeds' code. Layer by layer, each weight drawn as an
        `nn.Linear` weight [out, in] (so a hand-written net can draw the same numbers)."""
        gen = torch.Generator().manual_seed(seed)
        for layer in self.layers:
            w = torch.empty(layer.out_features, layer.in_features)
            init_weight_(w, Init(cfg.init), cfg.init_std, gen)
            layer.weight[k].copy_(w.t())
            layer.bias[k].zero_()


def init_weight_(w: torch.Tensor, init: Init, std: float, generator: torch.Generator) -> None:
    """Fill a [out, in] weight in place from the chosen distribution."""
    if init is Init.normal:
        w.normal_(0.0, std, generator=generator)
    elif init is Init.lecun_normal:
        w.normal_(0.0, 1.0 / math.sqrt(w.shape[1]), generator=generator)
    elif init is Init.truncated_normal:
        # tf.truncated_normal: values beyond 2 standard deviations are redrawn
        nn.init.trunc_normal_(w, mean=0.0, std=std, a=-2.0 * std, b=2.0 * std, generator=generator)
    else:  # pragma: no cover - the config's enum makes this unreachable
        raise ValueError(f"unknown init {init!r}")

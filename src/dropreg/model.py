"""The multilayer perceptron of the paper and of the notMNIST exercise, with dropout between layers."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import Activation, DropoutConfig, Init, ModelConfig

_ACTIVATIONS = {Activation.relu: nn.ReLU, Activation.logistic: nn.Sigmoid}


class MLP(nn.Module):
    """input -> [dropout] -> (Linear -> activation -> [dropout]) x hidden -> Linear -> logits.

    Dropout is given as *retain* probabilities, as in the paper. PyTorch's inverted dropout scales kept
    units by 1/p during training instead of scaling weights by p at test time: the same expected
    activations, and the eval-mode net is the plain one.
    """

    def __init__(self, input_dim: int, num_classes: int, cfg: ModelConfig,
                 dropout: DropoutConfig | None = None) -> None:
        super().__init__()
        dropout = dropout or DropoutConfig()
        self.activation = Activation(cfg.activation)
        widths = [input_dim, *cfg.hidden]
        self.input_dropout = _dropout(dropout.input_retain)
        self.hidden_layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.act = _ACTIVATIONS[self.activation]()
        self.hidden_dropout = _dropout(dropout.hidden_retain)
        self.output_layer = nn.Linear(widths[-1], num_classes)
        for layer in self.linear_layers:
            init_linear_(layer, Init(cfg.init), cfg.init_std)

    @property
    def linear_layers(self) -> list[nn.Linear]:
        return [*self.hidden_layers, self.output_layer]

    def forward(self, x: torch.Tensor, return_hidden: bool = False):
        """Logits; with return_hidden also each hidden layer's activations (before dropout)."""
        hidden = []
        h = self.input_dropout(x)
        for layer in self.hidden_layers:
            a = self.act(layer(h))
            if return_hidden:
                hidden.append(a)
            h = self.hidden_dropout(a)
        logits = self.output_layer(h)
        return (logits, hidden) if return_hidden else logits


def _dropout(retain: float) -> nn.Module:
    return nn.Identity() if retain >= 1.0 else nn.Dropout(p=1.0 - retain)


@torch.no_grad()
def init_linear_(layer: nn.Linear, init: Init, std: float) -> None:
    """Weights from the chosen distribution, biases zero (as in both the paper's and the seeds' code)."""
    if init is Init.normal:
        layer.weight.normal_(0.0, std)
    elif init is Init.lecun_normal:
        layer.weight.normal_(0.0, 1.0 / math.sqrt(layer.in_features))
    elif init is Init.truncated_normal:
        # tf.truncated_normal: values beyond 2 standard deviations are redrawn
        nn.init.trunc_normal_(layer.weight, mean=0.0, std=std, a=-2.0 * std, b=2.0 * std)
    else:  # pragma: no cover - the config's enum makes this unreachable
        raise ValueError(f"unknown init {init!r}")
    layer.bias.zero_()

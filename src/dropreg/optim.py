"""SGD with momentum for a pack: every member has its own learning rate and momentum.

PyTorch's SGD (dampening 0, no Nesterov) applied to each member's slice of every parameter:
buf = m_k·buf + g;  w −= lr_k·buf. The per-member values are device tensors [K] that the training
step overwrites in place before each step, and the momentum buffers exist from the start (zeros,
which gives PyTorch's first step buf = g), so the step is the same operations at every update and
can be captured in a CUDA graph.
"""

from __future__ import annotations

from typing import Iterable

import torch


class PackedSGD(torch.optim.Optimizer):
    def __init__(self, params: Iterable[torch.nn.Parameter], members: int) -> None:
        params = list(params)
        device = params[0].device
        super().__init__(params, {"lr": torch.zeros(members, device=device),
                                  "momentum": torch.zeros(members, device=device)})
        for p in params:
            self.state[p]["momentum_buffer"] = torch.zeros_like(p)

    def set_schedule(self, lr: torch.Tensor, momentum: torch.Tensor) -> None:
        for group in self.param_groups:
            group["lr"].copy_(lr)
            group["momentum"].copy_(momentum)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                shape = (-1,) + (1,) * (p.dim() - 1)  # member axis first
                buf = self.state[p]["momentum_buffer"]
                torch.addcmul(p.grad, buf, group["momentum"].view(shape), out=buf)  # one pass
                p.addcmul_(buf, group["lr"].view(shape), value=-1.0)
        return None

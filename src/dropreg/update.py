"""One weight update of every member of a pack, run eagerly or replayed as a captured CUDA graph.

The update is the whole of it, on device tensors only: gather the members' mini-batches, forward
with dropout, each member's mean cross-entropy plus its penalties, backward of their sum (so each
member's gradient is exactly its own), the schedules' learning rates and momenta, the SGD step,
max-norm, the running training statistics and the divergence check. Nothing in it reads a value
back to the host, so on CUDA it is captured once and replayed (`trainer.cuda_graph`); the host only
loads the next block of batch indices and reseeds the dropout generators between replays.
Evaluation, checkpoints and divergence handling happen between intervals, outside the graph.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from .module import PackedClassifier

BLOCK = 1000  # updates whose batch indices are loaded onto the device at once
WARMUP = 3  # eager updates before a capture (library set-up), undone afterwards


class PackUpdate:
    def __init__(self, module: "PackedClassifier", x: torch.Tensor, y: torch.Tensor, use_graph: bool) -> None:
        self.m, self.x, self.y = module, x, y
        device = x.device
        self.block = torch.zeros(BLOCK, module.members, module.batch_size, dtype=torch.long, device=device)
        self.pos = torch.zeros(1, dtype=torch.long, device=device)
        self.host_block = torch.zeros_like(self.block, device="cpu")
        self.copied = None  # CUDA: the event after the last copy out of the pinned host block
        if device.type == "cuda":
            self.host_block = self.host_block.pin_memory()
        self.use_graph = use_graph
        self.graph = None

    # ------------------------------------------------------------------ the update
    def __call__(self) -> None:
        m = self.m
        idx = self.block.index_select(0, self.pos).squeeze(0)  # [K, B]
        x, y = self.x[idx], self.y[idx]
        update = m.update_count
        t = update.to(torch.float32)
        masks = m.dropout.draw() if m.dropout.active else None
        logits, hidden = m.net(x, masks)
        k, b, c = logits.shape
        data_loss = F.cross_entropy(logits.reshape(k * b, c).float(), y.reshape(-1), reduction="none").view(k, b).mean(1)
        total = data_loss
        for i, penalty in enumerate(m.penalties):
            value, on = penalty(m.net, hidden if penalty.needs_hidden else [], update)
            total = total + value
            m.stats.add_penalty(i, value.detach(), on)
        m.optimizer.zero_grad(set_to_none=True)
        with _no_autocast(x.device.type):
            total.sum().backward()
        m.optimizer.set_schedule(m.schedules.lr(t) * m.running, m.schedules.momentum(t))
        m.optimizer.step()
        for constraint in m.constraints:
            constraint.apply(m.net)
        m.stats.add(data_loss.detach(), (logits.detach().argmax(-1) == y).sum(1))
        bad = ~torch.isfinite(total.detach())
        m.first_nonfinite.copy_(torch.where((m.first_nonfinite < 0) & bad, update, m.first_nonfinite))
        self.pos.add_(1)
        update.add_(1)

    # ------------------------------------------------------------------ running intervals
    def run(self, start: int, count: int, indices) -> None:
        """Updates start .. start + count - 1; `indices(start, n)` gives their batch indices [n, K, B]."""
        done = 0
        while done < count:
            n = min(BLOCK, count - done)
            self._load(indices(start + done, n))
            if self.use_graph and self.graph is None:
                self._capture()
            for _ in range(n):
                if self.graph is not None:
                    self.graph.replay()
                else:
                    self()
            done += n

    def _load(self, block: np.ndarray) -> None:
        n = len(block)
        if self.copied is not None:
            # the device runs far behind the host (a block of replays is queued in microseconds): the
            # pinned buffer may be refilled only once the device has copied the previous block out
            self.copied.synchronize()
        self.host_block[:n].copy_(torch.from_numpy(block))
        self.block[:n].copy_(self.host_block[:n], non_blocking=True)
        if self.block.device.type == "cuda":
            self.copied = torch.cuda.Event()
            self.copied.record()
        self.pos.zero_()

    def _capture(self) -> None:
        """Capture one update as a CUDA graph. A few eager updates first let cuBLAS and autograd set
        themselves up outside the capture; everything they changed (weights, momenta, statistics,
        counters, dropout generators) is put back, so the graph's first replay is the run's next
        update."""
        with self._undone():
            self._warm_up()
        self.m.optimizer.zero_grad(set_to_none=True)
        self.graph = self._record()

    @contextlib.contextmanager
    def _undone(self):
        state = [*self.m.mutable_state(), self.pos]
        saved = [t.clone() for t in state]
        rng = [gen.get_state() for gen in self.m.dropout.generators]
        yield
        with torch.no_grad():
            for target, value in zip(state, saved):
                target.copy_(value)
        for gen, value in zip(self.m.dropout.generators, rng):
            gen.set_state(value)

    def _warm_up(self) -> None:
        if self.x.device.type != "cuda":
            for _ in range(WARMUP):
                self()
            return
        side = torch.cuda.Stream()  # warm-up off the default stream, as PyTorch's graph docs do
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP):
                self()
        torch.cuda.current_stream().wait_stream(side)

    def _record(self):
        """The captured update (its `replay()` runs one update on the device)."""
        graph = torch.cuda.CUDAGraph()
        for gen in self.m.dropout.generators:  # per-run generators: read at every replay
            graph.register_generator_state(gen)
        with torch.cuda.graph(graph):
            self()
        return graph


def _no_autocast(device_type: str):
    """Backward outside autocast, as PyTorch recommends (bf16-mixed autocasts the forward only)."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()

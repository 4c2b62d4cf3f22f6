"""One weight update of every member of a pack, run eagerly or replayed as a captured CUDA graph.

The update is the whole of it, on device tensors only: gather the members' mini-batches, forward
with dropout, each member's mean cross-entropy plus its activity penalty, backward of their sum (so
each member's gradient is exactly its own), the schedules' learning rates and momenta, the SGD step
with the weight penalties' gradients, max-norm, the running training statistics and the divergence
check. Nothing in it reads a value back to the host, so on CUDA it is captured once and replayed
(`trainer.cuda_graph`); the host only loads the next block of batch indices and reseeds the
dropout generators between replays. Evaluation, checkpoints and divergence handling happen between
intervals, outside the graph.

The graph checks itself. If the capture fails, or the first block of replays differs from an
eager recomputation of the same updates by more than `CHECK_TOLERANCE` (relative, on every tensor
the update writes), the pack goes on eagerly from the eager result, with one warning line, and
`graph_status` says why (it goes into every member's summary).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from .model import PackModel

log = logging.getLogger("dropreg.train")

BLOCK = 1000  # updates whose batch indices are loaded onto the device at once
WARMUP = 3  # eager updates before a capture (library set-up), undone afterwards
# the largest |graph - eager| / max|eager| over the tensors the first block writes that still counts
# as equal (the same kernels run either way; this leaves room for atomics in reductions)
CHECK_TOLERANCE = 1e-3


def _torch_version() -> tuple[int, int]:
    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    return int(major), int(minor)


def register_generators(graph, generators: list[torch.Generator]) -> None:
    """Make replays read the generators' current seed and offset. PyTorch < 2.14 needs each
    registered explicitly; from 2.14 on a generator used during capture is registered by the capture
    itself and `register_generator_state` is a deprecated no-op (pytorch/pytorch#176753)."""
    if _torch_version() < (2, 14):
        for gen in generators:
            graph.register_generator_state(gen)


class PackUpdate:
    def __init__(self, model: PackModel, x: torch.Tensor, y: torch.Tensor, use_graph: bool,
                 why_not: str = "trainer.cuda_graph=off") -> None:
        self.model, self.x, self.y = model, x, y
        device = x.device
        self.block = torch.zeros(BLOCK, model.members, model.batch_size, dtype=torch.long, device=device)
        self.pos = torch.zeros(1, dtype=torch.long, device=device)
        self.host_block = torch.zeros_like(self.block, device="cpu")
        self.copied = None  # CUDA: the event after the last copy out of the pinned host block
        if device.type == "cuda":
            self.host_block = self.host_block.pin_memory()
        self.use_graph = use_graph
        self.graph = None
        self.checked = False
        # (used, reason): whether updates replay a CUDA graph, and why not when asked for
        self.graph_status: tuple[bool, Optional[str]] = (use_graph, None if use_graph else why_not)

    # ------------------------------------------------------------------ the update
    def __call__(self) -> None:
        m = self.model
        idx = self.block.index_select(0, self.pos).squeeze(0)  # [K, B]
        x, y = self.x[idx], self.y[idx]
        update = m.update_count
        t = update.to(torch.float32)
        if m.dropout.active:
            m.dropout.draw()
        logits, hidden = m.net(x, m.dropout if m.dropout.active else None)
        k, b, c = logits.shape
        data_loss = F.cross_entropy(logits.reshape(k * b, c).float(), y.reshape(-1), reduction="none").view(k, b).mean(1)
        total = data_loss
        for i, penalty in enumerate(m.regularizers.activity_penalties):
            value, activity = penalty(hidden)
            total = total.index_add(0, penalty.slots.index, value)
            m.stats.add_penalty(i, penalty.slots, value.detach(), activity)
        m.optimizer.zero_grad(set_to_none=True)
        with _no_autocast(x.device.type):
            total.sum().backward()
        m.optimizer.set_schedule(m.schedules.lr(t) * m.running, m.schedules.momentum(t))
        m.optimizer.step(update)
        if m.regularizers.max_norm is not None:
            m.regularizers.max_norm.apply(m.net)
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
            if self.graph is not None and not self.checked:
                self._checked_replays(n)
            else:
                for _ in range(n):
                    self.graph.replay() if self.graph is not None else self()
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

    # ------------------------------------------------------------------ the graph
    def _fall_back(self, reason: str) -> None:
        self.graph, self.use_graph = None, False
        self.graph_status = (False, reason)
        log.warning(f"CUDA graph off for this pack ({reason}); training on eagerly")

    def _capture(self) -> None:
        """Capture one update as a CUDA graph. A few eager updates first let cuBLAS and autograd set
        themselves up outside the capture; everything they changed (weights, momenta, statistics,
        counters, dropout generators) is put back, so the graph's first replay is the run's next
        update. A capture that fails leaves the pack eager."""
        saved = self._snapshot()
        try:
            self._warm_up()
            self._restore(saved)
            self.model.optimizer.zero_grad(set_to_none=True)
            self.graph = self._record()
        except Exception as exc:  # noqa: BLE001 - any capture error: eager is always correct
            self._restore(saved)
            self.model.optimizer.zero_grad(set_to_none=True)
            self._fall_back(f"capture failed: {type(exc).__name__}: {' '.join(str(exc).split())[:160]}")
        else:
            self.graph_status = (True, None)

    def _checked_replays(self, n: int) -> None:
        """The first n replays, checked against n eager updates from the same state; the eager
        results are kept either way."""
        before = self._snapshot()
        for _ in range(n):
            self.graph.replay()
        replayed = [t.clone() for t in self._state()]
        self._restore(before)
        for _ in range(n):
            self()
        self.checked = True
        difference = max((_relative_difference(a, b) for a, b in zip(replayed, self._state())), default=0.0)
        if not difference <= CHECK_TOLERANCE:
            self._fall_back(f"the first {n} replayed updates differ from eager ones by {difference:.3g} "
                            f"(relative; allowed {CHECK_TOLERANCE:g})")

    def _state(self) -> list[torch.Tensor]:
        return [*self.model.mutable_state(), self.pos]

    def _snapshot(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return [t.clone() for t in self._state()], [gen.get_state() for gen in self.model.dropout.generators]

    def _restore(self, saved) -> None:
        tensors, rng = saved
        with torch.no_grad():
            for target, value in zip(self._state(), tensors):
                target.copy_(value)
        for gen, value in zip(self.model.dropout.generators, rng):
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
        register_generators(graph, self.model.dropout.generators)
        with torch.cuda.graph(graph):
            self()
        return graph


def _relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    both = torch.isfinite(a) & torch.isfinite(b)
    if not torch.equal(both, torch.isfinite(a) | torch.isfinite(b)):
        return float("inf")  # non-finite in one only
    if not both.any():
        return 0.0
    scale = float(b[both].abs().max()) or 1.0
    return float((a[both] - b[both]).abs().max()) / scale


def _no_autocast(device_type: str):
    """Backward outside autocast, as PyTorch recommends (bf16-mixed autocasts the forward only)."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()

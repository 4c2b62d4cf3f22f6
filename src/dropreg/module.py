"""The LightningModule of a pack: K runs of one architecture trained at once as one batched network.

Lightning hosts the loop (Trainer, device placement, precision, callbacks, loggers) with manual
optimization. One Lightning training step is one evaluation interval: `eval_every` weight updates
run by `PackUpdate` (eagerly, or as replays of a captured CUDA graph), so Lightning's per-step
overhead is paid once per interval, not once per update. A validation pass follows every interval
and yields each member's metrics (`train/loss`, `train/error`, `train/penalty_<name>`, `val/error`,
`test/error` in %, `lr`, `momentum`); the recorder callback writes them.

Each member occupies a slot k. A slot is `running`, `waiting` (its run resumes from a checkpoint
at a later update than the pack starts at: it joins when the pack gets there) or `retired`
(finished or diverged: frozen at zero weights and learning rate, so it costs nothing but its share
of the arithmetic and can never produce a non-finite number again).
"""

from __future__ import annotations

from typing import Any, Optional

import pytorch_lightning as pl
import torch
from torch import nn

from .batches import PackBatches
from .config import TrainConfig, validate
from .dropout import PackedDropout
from .net import PackedMLP
from .optim import PackedSGD
from .regularizers import build_constraints, build_penalties
from .schedules import PackedSchedules
from .update import PackUpdate

RUNNING, WAITING, RETIRED = "running", "waiting", "retired"


class TrainStats(nn.Module):
    """Per-member sums since the last evaluation, kept on the device (updated inside the graph)."""

    def __init__(self, members: int, penalties: list[str]) -> None:
        super().__init__()
        self.penalties = penalties
        self.register_buffer("loss", torch.zeros(members, dtype=torch.float64), persistent=False)
        self.register_buffer("correct", torch.zeros(members, dtype=torch.long), persistent=False)
        self.register_buffer("penalty", torch.zeros(len(penalties), members, dtype=torch.float64), persistent=False)
        self.register_buffer("penalty_on", torch.zeros(len(penalties), members), persistent=False)

    def add(self, loss: torch.Tensor, correct: torch.Tensor) -> None:
        self.loss.add_(loss)
        self.correct.add_(correct)

    def add_penalty(self, i: int, value: torch.Tensor, on: torch.Tensor) -> None:
        self.penalty[i].add_(value * on)
        self.penalty_on[i].add_(on)

    def read(self, updates: int, batch_size: int) -> list[dict[str, float]]:
        """Each member's means over the `updates` since the last read; then start again."""
        loss, correct = self.loss.tolist(), self.correct.tolist()
        penalty, on = self.penalty.tolist(), self.penalty_on.tolist()
        out = []
        for k in range(len(loss)):
            row = {"train/loss": loss[k] / updates, "train/error": 100.0 * (1.0 - correct[k] / (updates * batch_size))}
            for i, name in enumerate(self.penalties):
                if on[i][k] > 0:
                    row[f"train/penalty_{name}"] = penalty[i][k] / on[i][k]
            out.append(row)
        for buf in (self.loss, self.correct, self.penalty, self.penalty_on):
            buf.zero_()
        return out


class PackedClassifier(pl.LightningModule):
    def __init__(self, configs: list[dict[str, Any]]) -> None:
        """`configs`: the members' resolved configs (plain dicts); they travel in every checkpoint."""
        super().__init__()
        self.save_hyperparameters({"configs": configs})
        self.automatic_optimization = False
        self.settings: list[TrainConfig] = [validate(c) for c in configs]
        s = self.settings[0]
        self.members, self.batch_size = len(configs), s.optim.batch_size
        self.max_updates, self.eval_every = s.optim.max_updates, s.trainer.eval_every
        regs = [m.regularizer for m in self.settings]
        self.net = PackedMLP(self.members, s.dataset.input_dim, s.model.hidden, s.dataset.num_classes, s.model.activation)
        for k, m in enumerate(self.settings):
            self.net.init_member_(k, m.model, m.seed)
        self.dropout = PackedDropout([r.dropout for r in regs], self.net.dropout_widths, self.batch_size)
        self.penalties = nn.ModuleList(build_penalties(regs, s.model.activation, self.max_updates))
        self.constraints = nn.ModuleList(build_constraints(regs))
        self.schedules = PackedSchedules([m.optim for m in self.settings])
        self.stats = TrainStats(self.members, [p.name for p in self.penalties])
        self.register_buffer("update_count", torch.zeros(1, dtype=torch.long), persistent=False)
        self.register_buffer("first_nonfinite", torch.full((self.members,), -1, dtype=torch.long), persistent=False)
        self.register_buffer("running", torch.ones(self.members), persistent=False)  # multiplies the lr
        self.phase = [RUNNING] * self.members
        self.joins: dict[int, tuple[int, dict]] = {}  # slot -> (update, member state) of waiting slots
        self.optimizer: Optional[PackedSGD] = None
        self.step_fn: Optional[PackUpdate] = None
        self.use_cuda_graph = False
        self.last_eval: dict[int, dict[str, float]] = {}  # slot -> metrics of the latest evaluation
        self.diverged: dict[int, int] = {}  # slot -> update of its first non-finite loss (latest evaluation)
        self._updates_since_eval = 0
        self._eval_correct: dict[str, torch.Tensor] = {}
        self._eval_total: dict[str, int] = {}

    # ------------------------------------------------------------------ members
    @property
    def update(self) -> int:
        return int(self.update_count)

    def resume(self, states: dict[int, dict]) -> None:
        """Slots whose runs continue from a checkpoint (state from `member_state`). The pack starts at
        the earliest update among all slots (0 for fresh ones); a slot joins when the pack reaches
        its checkpoint's update (at the start of fit for the earliest)."""
        start = min([s["update"] for s in states.values()] + ([0] if len(states) < self.members else []))
        self.update_count.fill_(start)
        for k, state in states.items():
            self.joins[k] = (state["update"], state)
            self.phase[k] = WAITING

    def _join(self, update: int) -> None:
        for k, (at, state) in list(self.joins.items()):
            if at == update:
                self.load_member(k, state)
                self.phase[k] = RUNNING
                del self.joins[k]
        self.running.copy_(torch.tensor([1.0 if p == RUNNING else 0.0 for p in self.phase]))

    @torch.no_grad()
    def member_state(self, k: int) -> dict[str, Any]:
        """Slot k as a pack of one: parameters [1, ...] under their module names, momentum buffers."""
        params = dict(self.named_parameters())
        state = {"state_dict": {n: p[k:k + 1].detach().cpu().clone() for n, p in params.items()},
                 "update": self.update}
        if self.optimizer is not None:
            state["momentum"] = {n: self.optimizer.state[p]["momentum_buffer"][k:k + 1].cpu().clone()
                                 for n, p in params.items()}
        return state

    @torch.no_grad()
    def load_member(self, k: int, state: dict[str, Any]) -> None:
        momentum = state.get("momentum", {})  # a checkpoint without it restarts momentum from zero
        for n, p in self.named_parameters():
            p[k:k + 1].copy_(state["state_dict"][n])
            if self.optimizer is not None:
                buffer = self.optimizer.state[p]["momentum_buffer"][k:k + 1]
                buffer.copy_(momentum[n]) if n in momentum else buffer.zero_()
        self.first_nonfinite[k] = -1

    @torch.no_grad()
    def retire(self, k: int) -> None:
        """Freeze slot k (finished or diverged): zero weights, momentum and learning rate."""
        self.phase[k] = RETIRED
        for p in self.parameters():
            p[k].zero_()
            if self.optimizer is not None:
                self.optimizer.state[p]["momentum_buffer"][k].zero_()
        self.running[k] = 0.0

    def mutable_state(self) -> list[torch.Tensor]:
        """Every tensor an update writes (what a CUDA-graph warm-up must leave unchanged)."""
        buffers = [self.optimizer.state[p]["momentum_buffer"] for p in self.parameters()] if self.optimizer else []
        return [*self.parameters(), *buffers, *self.stats.buffers(), self.update_count, self.first_nonfinite]

    # ------------------------------------------------------------------ Lightning: training
    def configure_optimizers(self) -> PackedSGD:
        self.optimizer = PackedSGD(self.parameters(), self.members)
        return self.optimizer

    def on_fit_start(self) -> None:
        self._join(self.update)  # the slots that resume where the pack starts (the optimizer exists now)
        dm = self.trainer.datamodule
        x, y = dm.tensors["train"]
        sizes = [m.dataset.train_subset or len(y) for m in self.settings]
        self.batches = PackBatches(sizes, self.batch_size, [m.seed for m in self.settings])
        self.step_fn = PackUpdate(self, x, y, use_graph=self.use_cuda_graph)

    def intervals(self) -> list[tuple[int, int]]:
        """(first update, number of updates) of each remaining interval: up to every multiple of
        eval_every, and the budget's end."""
        out, u = [], self.update
        while u < self.max_updates:
            end = min((u // self.eval_every + 1) * self.eval_every, self.max_updates)
            out.append((u, end - u))
            u = end
        return out

    def training_step(self, interval: tuple[int, int], batch_idx: int) -> None:
        start, count = (int(v) for v in interval)
        self._join(start)
        self.dropout.reseed([m.seed for m in self.settings], start)
        self.step_fn.run(start, count, self.batches.indices)
        self._updates_since_eval = count

    # ------------------------------------------------------------------ Lightning: evaluation
    @property
    def eval_splits(self) -> list[str]:
        return self.trainer.datamodule.eval_splits

    def on_validation_epoch_start(self) -> None:
        self._eval_correct = {s: torch.zeros(self.members, dtype=torch.long, device=self.device)
                              for s in self.eval_splits}
        self._eval_total = {s: 0 for s in self.eval_splits}

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int,
                        dataloader_idx: int = 0) -> None:
        x, y = batch
        split = self.eval_splits[dataloader_idx]
        for k in range(self.members):
            if self.phase[k] == RUNNING:
                self._eval_correct[split][k] += (self.net.member_logits(k, x).argmax(1) == y).sum()
        self._eval_total[split] += len(y)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or not self._updates_since_eval:
            return
        train = self.stats.read(self._updates_since_eval, self.batch_size)
        correct = {s: c.tolist() for s, c in self._eval_correct.items()}
        t = self.update_count.to(torch.float32)
        lr, momentum = self.schedules.lr(t).tolist(), self.schedules.momentum(t).tolist()
        first = self.first_nonfinite.tolist()
        # the loss checks every update's inputs; weights the interval's last update made non-finite
        # show only here (at the end of the budget there is no next update to notice them)
        finite = torch.stack([p.detach().flatten(1).isfinite().all(1) for p in self.parameters()]).all(0).tolist()
        last_update = self.update - 1
        self.last_eval, self.diverged = {}, {}
        for k in range(self.members):
            if self.phase[k] != RUNNING:
                continue
            metrics = dict(train[k])
            for split in self.eval_splits:
                metrics[f"{split}/error"] = round(100.0 * (1.0 - correct[split][k] / self._eval_total[split]), 4)
            metrics["lr"], metrics["momentum"] = lr[k], momentum[k]
            self.last_eval[k] = metrics
            if first[k] >= 0:
                self.diverged[k] = first[k]
            elif not finite[k]:
                self.diverged[k] = last_update
        self._updates_since_eval = 0

"""A pack: K runs of one architecture as one network, with everything their updates need.

`PackModel` owns the batched net, the dropout generators, the regularizers, the learning-rate and
momentum schedules, the optimizer, the running training statistics and each member's state; the
update (`dropreg.update.PackUpdate`) works on it alone, and the LightningModule (`dropreg.module`)
only hosts it. Its parameters are the net's, so its `state_dict` of a pack of one is a run's
checkpoint of weights (`net.layers.<i>.weight|bias`).

Each member occupies a slot k. A slot is `running`, `waiting` (its run resumes from a checkpoint
at a later update than the pack starts at: it joins when the pack gets there) or `retired` (ended
or diverged: frozen at zero weights and learning rate, so it costs nothing but its share of the
arithmetic and can never produce a non-finite number again).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import nn

from .schema import TrainConfig
from .dropout import PackedDropout
from .net import PackedMLP
from .optim import PackedSGD
from .regularizers import Regularizers, weights_near_zero
from .schedules import PackedSchedules

RUNNING, WAITING, RETIRED = "running", "waiting", "retired"


class TrainStats(nn.Module):
    """Per-member sums since the last evaluation, kept on the device (updated inside the graph)."""

    def __init__(self, members: int, penalties: list[str]) -> None:
        super().__init__()
        self.penalties = penalties
        self.register_buffer("loss", torch.zeros(members, dtype=torch.float64), persistent=False)
        self.register_buffer("correct", torch.zeros(members, dtype=torch.long), persistent=False)
        self.register_buffer("penalty", torch.zeros(len(penalties), members, dtype=torch.float64), persistent=False)
        self.register_buffer("activity", torch.zeros(len(penalties), members, dtype=torch.float64), persistent=False)

    def add(self, loss: torch.Tensor, correct: torch.Tensor) -> None:
        self.loss.add_(loss)
        self.correct.add_(correct)

    def add_penalty(self, i: int, slots, value: torch.Tensor, activity: torch.Tensor) -> None:
        slots.add_(self.penalty[i], value.to(self.penalty.dtype))
        slots.add_(self.activity[i], activity.to(self.activity.dtype))

    def read(self, updates: int, batch_size: int) -> tuple[list[dict[str, float]], list[list[float]], list[list[float]]]:
        """Each member's training means over the `updates` since the last read, and the means of the
        activity penalties' values and of their units' activity, per penalty and member; then start again."""
        loss, correct = self.loss.tolist(), self.correct.tolist()
        penalty, activity = self.penalty.tolist(), self.activity.tolist()
        rows = [{"train/loss": loss[k] / updates, "train/error": 100.0 * (1.0 - correct[k] / (updates * batch_size))}
                for k in range(len(loss))]
        for buf in (self.loss, self.correct, self.penalty, self.activity):
            buf.zero_()
        return rows, [[v / updates for v in p] for p in penalty], [[v / updates for v in a] for a in activity]


@dataclass
class Evaluation:
    """What one evaluation found, per running slot: its metrics row, its state (weights, momentum)
    and, for the slots that ended here, the update of their first non-finite loss (None: their
    budget ended). `update` is the number of updates done."""

    update: int
    metrics: dict[int, dict[str, float]] = field(default_factory=dict)
    states: dict[int, dict[str, Any]] = field(default_factory=dict)
    ended: dict[int, Optional[int]] = field(default_factory=dict)


class PackModel(nn.Module):
    def __init__(self, settings: list[TrainConfig]) -> None:
        super().__init__()
        self.settings = settings
        s = settings[0]
        self.members, self.batch_size = len(settings), s.optim.batch_size
        self.max_updates, self.eval_every = s.optim.max_updates, s.trainer.eval_every
        regs = [m.regularizer for m in settings]
        self.net = PackedMLP(self.members, s.dataset.input_dim, s.model.hidden, s.dataset.num_classes, s.model.activation)
        for k, m in enumerate(settings):
            self.net.init_member_(k, m.model, m.seed)
        self.dropout = PackedDropout([r.dropout for r in regs], self.net.dropout_widths, self.batch_size)
        self.regularizers = Regularizers(regs, s.model.activation, self.max_updates)
        self.schedules = PackedSchedules([m.optim for m in settings])
        self.stats = TrainStats(self.members, [p.name for p in self.regularizers.activity_penalties])
        self.register_buffer("update_count", torch.zeros(1, dtype=torch.long), persistent=False)
        self.register_buffer("first_nonfinite", torch.full((self.members,), -1, dtype=torch.long), persistent=False)
        self.register_buffer("running", torch.ones(self.members), persistent=False)  # multiplies the lr
        self.phase = [RUNNING] * self.members
        self.joins: dict[int, tuple[int, dict]] = {}  # slot -> (update, member state) of waiting slots
        self.optimizer: Optional[PackedSGD] = None

    @property
    def update(self) -> int:
        return int(self.update_count)

    @property
    def seeds(self) -> list[int]:
        return [m.seed for m in self.settings]

    def make_optimizer(self) -> PackedSGD:
        """The optimizer, made on the device the model is on (its momentum buffers live there)."""
        self.optimizer = PackedSGD(self.net.named_parameters(), self.members, self.regularizers.weight_penalties)
        return self.optimizer

    def intervals(self) -> list[tuple[int, int]]:
        """(first update, number of updates) of each remaining interval: up to every multiple of
        eval_every, and the budget's end."""
        out, u = [], self.update
        while u < self.max_updates:
            end = min((u // self.eval_every + 1) * self.eval_every, self.max_updates)
            out.append((u, end - u))
            u = end
        return out

    # ------------------------------------------------------------------ members
    def resume(self, states: dict[int, dict]) -> None:
        """Slots whose runs continue from a checkpoint (state from `member_state`). The pack starts at
        the earliest update among all slots (0 for fresh ones); a slot joins when the pack reaches
        its checkpoint's update (at the start of training for the earliest)."""
        start = min([s["update"] for s in states.values()] + ([0] if len(states) < self.members else []))
        self.update_count.fill_(start)
        for k, state in states.items():
            self.joins[k] = (state["update"], state)
            self.phase[k] = WAITING

    def join(self, update: int) -> None:
        """Slots waiting for `update` start running (call with the optimizer made)."""
        for k, (at, state) in list(self.joins.items()):
            if at == update:
                self.load_member(k, state)
                self.phase[k] = RUNNING
                del self.joins[k]
        self.running.copy_(torch.tensor([1.0 if p == RUNNING else 0.0 for p in self.phase]))

    @torch.no_grad()
    def member_state(self, k: int) -> dict[str, Any]:
        """Slot k as a pack of one: parameters [1, ...] under their names, momentum buffers."""
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
        """Freeze slot k (ended or diverged): zero weights, momentum and learning rate."""
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

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def correct(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Correct predictions of every running member on (x, y), [K] (0 for the others)."""
        out = torch.zeros(self.members, dtype=torch.long, device=x.device)
        for k in range(self.members):
            if self.phase[k] == RUNNING:
                out[k] = (self.net.member_logits(k, x).argmax(1) == y).sum()
        return out

    @torch.no_grad()
    def evaluate(self, interval: tuple[int, int], correct: dict[str, list[int]], totals: dict[str, int]) -> Evaluation:
        """Close the interval (first update, updates) that just ran: every running member's metrics
        and state; the members that ended (budget reached, or a non-finite loss or weights) are
        retired after their state is taken."""
        start, count = interval
        train, penalties, activity = self.stats.read(count, self.batch_size)
        t = self.update_count.to(torch.float32)
        lr, momentum = self.schedules.lr(t).tolist(), self.schedules.momentum(t).tolist()
        first = self.first_nonfinite.tolist()
        # the loss checks every update's inputs; weights the interval's last update made non-finite
        # show only here (at the end of the budget there is no next update to notice them)
        finite = torch.stack([p.flatten(1).isfinite().all(1) for p in self.parameters()]).all(0).tolist()
        logged = {**self._penalty_values(start + count - 1, penalties), **self._activity(activity)}
        result = Evaluation(update=self.update)
        for k in range(self.members):
            if self.phase[k] != RUNNING:
                continue
            metrics = {**train[k], **{name: values[k] for name, values in logged.items() if values[k] is not None}}
            for split, c in correct.items():
                metrics[f"{split}/error"] = round(100.0 * (1.0 - c[k] / totals[split]), 4)
            metrics["lr"], metrics["momentum"] = lr[k], momentum[k]
            result.metrics[k] = metrics
            result.states[k] = self.member_state(k)
            if first[k] >= 0:
                result.ended[k] = first[k]
            elif not finite[k]:
                result.ended[k] = self.update - 1
            elif self.update >= self.max_updates:
                result.ended[k] = None
        for k in result.ended:
            self.retire(k)
        return result

    def _activity(self, kl_activity: list[list[float]]) -> dict[str, list[Optional[float]]]:
        """Whether each regularizer acts (`reg/...` columns): the fraction of weights near zero (every
        member: L1 should raise it above the unregularized runs'), the fraction of hidden units at the
        max-norm bound (its members: 0 means the constraint never binds and the run is unregularized),
        the KL members' mean hidden activity over the interval (against their target ρ)."""
        out: dict[str, list[Optional[float]]] = {
            "reg/weights_near_zero": weights_near_zero(self.net, self.members).tolist()}
        max_norm = self.regularizers.max_norm
        if max_norm is not None:
            out["reg/units_at_max_norm"] = self._members_row(max_norm.slots.indices,
                                                             max_norm.at_bound(self.net, self.members).tolist())
        for p, mean in zip(self.regularizers.activity_penalties, kl_activity):
            out[f"reg/{p.name}_mean_activity"] = self._members_row(p.slots.indices, mean)
        return out

    def _members_row(self, slots: list[int], values: list[float]) -> list[Optional[float]]:
        """`values` at `slots`, None for the members without that regularizer."""
        row: list[Optional[float]] = [None] * self.members
        for k in slots:
            row[k] = values[k]
        return row

    def _penalty_values(self, last_update: int, means: list[list[float]]) -> dict[str, list[Optional[float]]]:
        """train/penalty_<name> per member: a weight penalty at the current weights (when it was on
        at the interval's last update), an activity penalty averaged over the interval's updates."""
        out: dict[str, list[Optional[float]]] = {}
        for p in self.regularizers.weight_penalties:
            values, row = p.value(self.net, self.members).tolist(), [None] * self.members
            for k, start in zip(p.slots.indices, p.start):
                if last_update >= start:
                    row[k] = values[k]
            out[f"train/penalty_{p.name}"] = row
        for p, mean in zip(self.regularizers.activity_penalties, means):
            out[f"train/penalty_{p.name}"] = self._members_row(p.slots.indices, mean)
        return out

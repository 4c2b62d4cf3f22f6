"""The LightningModule: data loss + penalties, max-norm after each step, the paper's SGD schedules,
and the metrics `train/loss`, `train/error`, `train/penalty_<name>`, `val/error`, `test/error` (%)."""

from __future__ import annotations

from typing import Any, Optional

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from .config import validate
from .model import MLP
from .regularizers import build_constraints, build_penalties
from .schedules import lr_factor, momentum_at


class RegularizedClassifier(pl.LightningModule):
    def __init__(self, config: dict[str, Any]) -> None:
        """`config` is the run's resolved config as a plain dict; it travels in every checkpoint."""
        super().__init__()
        self.save_hyperparameters({"config": config})
        cfg = self.cfg = validate(OmegaConf.create(config))
        self.model = MLP(cfg.dataset.input_dim, cfg.dataset.num_classes, cfg.model, cfg.regularizer.dropout)
        self.penalties = build_penalties(cfg.regularizer, cfg.model.activation, cfg.optim.max_updates)
        self.constraints = build_constraints(cfg.regularizer)
        self.needs_hidden = any(p.needs_hidden for p in self.penalties)

        def accuracy() -> MulticlassAccuracy:
            return MulticlassAccuracy(num_classes=cfg.dataset.num_classes, average="micro", validate_args=False)

        def mean() -> MeanMetric:
            return MeanMetric(nan_strategy="disable")  # no per-step NaN check: it would sync the GPU

        self.train_loss, self.train_accuracy = mean(), accuracy()
        self.train_penalty = nn.ModuleDict({p.name: mean() for p in self.penalties})
        self.eval_accuracy = nn.ModuleDict({"val": accuracy(), "test": accuracy()})
        self.updates_since_eval = 0
        # first update whose loss was NaN/inf, tracked on the device (a per-step check would sync)
        self.register_buffer("first_nonfinite_update", torch.tensor(-1, dtype=torch.long))
        self.diverged_at: Optional[int] = None
        self.last_eval: dict[str, float] = {}  # the latest evaluation, at full precision, for the recorder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    # ------------------------------------------------------------------ training
    def configure_optimizers(self):
        o = self.cfg.optim
        opt = torch.optim.SGD(self.parameters(), lr=o.lr, momentum=momentum_at(o, 0))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: lr_factor(o, t))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        m = momentum_at(self.cfg.optim, self.global_step)
        for group in self.trainer.optimizers[0].param_groups:
            group["momentum"] = m

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        update = self.global_step
        if self.needs_hidden:
            logits, hidden = self.model(x, return_hidden=True)
        else:
            logits, hidden = self.model(x), []
        data_loss = F.cross_entropy(logits, y)
        loss = data_loss
        for penalty in self.penalties:
            value = penalty(self.model, hidden, update)
            if value is not None:
                loss = loss + value
                self.train_penalty[penalty.name].update(value.detach())
        self.train_loss.update(data_loss.detach())
        self.train_accuracy.update(logits.detach(), y)
        self.updates_since_eval += 1
        first = self.first_nonfinite_update
        first.copy_(torch.where((first < 0) & ~torch.isfinite(loss.detach()), update, first))
        return loss

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        for constraint in self.constraints:
            constraint.apply(self.model)

    # ------------------------------------------------------------------ evaluation
    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int,
                        dataloader_idx: int = 0) -> None:
        x, y = batch
        split = self.trainer.datamodule.eval_splits[dataloader_idx]
        self.eval_accuracy[split].update(self.model(x), y)

    def on_validation_epoch_end(self) -> None:
        metrics: dict[str, float] = {}
        if self.updates_since_eval:
            metrics["train/loss"] = float(self.train_loss.compute())
            metrics["train/error"] = _error_percent(self.train_accuracy)
            for name, value in self.train_penalty.items():
                if value.update_count:
                    metrics[f"train/penalty_{name}"] = float(value.compute())
            for metric in (self.train_loss, self.train_accuracy, *self.train_penalty.values()):
                metric.reset()
            self.updates_since_eval = 0
        for split in self.trainer.datamodule.eval_splits:
            metrics[f"{split}/error"] = _error_percent(self.eval_accuracy[split])
            self.eval_accuracy[split].reset()
        group = self.trainer.optimizers[0].param_groups[0] if self.trainer.optimizers else {}
        metrics["lr"], metrics["momentum"] = group.get("lr", float("nan")), group.get("momentum", float("nan"))
        self.last_eval = metrics
        self.log_dict(metrics)  # for Lightning's loggers and callbacks a user may add
        first = int(self.first_nonfinite_update)
        if first >= 0:
            self.diverged_at = first
            self.trainer.should_stop = True

    # ------------------------------------------------------------------ exact resume
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Lightning does not store RNG states; dropout masks after a resume need them."""
        checkpoint["rng_state"] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            checkpoint["rng_state"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("rng_state", {})
        if "torch" in state:
            torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def _error_percent(accuracy: MulticlassAccuracy) -> float:
    """100 (1 - accuracy), rounded to 1e-4 % (accuracy is float32 inside torchmetrics)."""
    return round(100.0 * (1.0 - float(accuracy.compute())), 4)

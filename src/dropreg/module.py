"""The LightningModule of a pack: Lightning's hooks around a `PackModel` and its `PackUpdate`.

Lightning hosts the loop (Trainer, device placement, precision, callbacks, loggers) with manual
optimization. One Lightning training step is one evaluation interval: `eval_every` weight updates
run by `PackUpdate` (eagerly, or as replays of a captured CUDA graph), so Lightning's per-step
overhead is paid once per interval, not once per update. A validation pass follows every interval;
its result, an `Evaluation` (each running member's metrics and state, and who ended), is left in
`evaluation` for the recorder callback to write.

The module's state is its model's: `state_dict` of a pack of one is a run's weights, so
`PackedClassifier.load_from_checkpoint("<run dir>/last.ckpt")` gives the trained model.
"""

from __future__ import annotations

from typing import Any, Optional

import pytorch_lightning as pl
import torch

from .batches import PackBatches
from .schema import TrainConfig, validate
from .model import Evaluation, PackModel
from .update import PackUpdate


class PackedClassifier(pl.LightningModule):
    def __init__(self, configs: list[dict[str, Any]], use_cuda_graph: bool = False,
                 graph_off_reason: str = "trainer.cuda_graph=off",
                 settings: Optional[list[TrainConfig]] = None) -> None:
        """`configs`: the members' resolved configs (plain dicts); they travel in every checkpoint.
        `settings`: the same, validated by the caller (else here: `load_from_checkpoint`)."""
        super().__init__()
        self.save_hyperparameters({"configs": configs})
        self.automatic_optimization = False
        self.model = PackModel(settings if settings is not None else [validate(c) for c in configs])
        self.use_cuda_graph, self.graph_off_reason = use_cuda_graph, graph_off_reason
        self.step_fn: Optional[PackUpdate] = None
        self.evaluation: Optional[Evaluation] = None  # the latest, until the recorder takes it
        self._interval = (0, 0)
        self._correct: dict[str, torch.Tensor] = {}
        self._total: dict[str, int] = {}

    @property
    def net(self):
        return self.model.net

    @property
    def members(self) -> int:
        return self.model.members

    def state_dict(self, *args, **kwargs):
        return self.model.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.model.load_state_dict(state_dict, strict=strict, assign=assign)

    # ------------------------------------------------------------------ training
    def configure_optimizers(self):
        return self.model.make_optimizer()

    def on_fit_start(self) -> None:
        m = self.model
        m.join(m.update)  # the slots that resume where the pack starts (the optimizer exists now)
        x, y = self.trainer.datamodule.tensors["train"]
        sizes = [s.dataset.train_subset or len(y) for s in m.settings]
        self.batches = PackBatches(sizes, m.batch_size, m.seeds)
        self.step_fn = PackUpdate(m, x, y, use_graph=self.use_cuda_graph, why_not=self.graph_off_reason)

    def training_step(self, interval: tuple[int, int], batch_idx: int) -> None:
        start, count = (int(v) for v in interval)
        self.model.join(start)
        self.model.dropout.reseed(self.model.seeds, start)
        self.step_fn.run(start, count, self.batches.indices)
        self._interval = (start, count)

    # ------------------------------------------------------------------ evaluation
    @property
    def eval_splits(self) -> list[str]:
        return self.trainer.datamodule.eval_splits

    def on_validation_epoch_start(self) -> None:
        self._correct = {s: torch.zeros(self.members, dtype=torch.long, device=self.device) for s in self.eval_splits}
        self._total = {s: 0 for s in self.eval_splits}

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int,
                        dataloader_idx: int = 0) -> None:
        x, y = batch
        split = self.eval_splits[dataloader_idx]
        self._correct[split] += self.model.correct(x, y)
        self._total[split] += len(y)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or not self._interval[1]:
            return
        correct = {s: c.tolist() for s, c in self._correct.items()}
        self.evaluation = self.model.evaluate(self._interval, correct, self._total)
        self._interval = (0, 0)

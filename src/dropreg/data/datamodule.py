"""Lightning data module that keeps a whole prepared dataset as tensors on the training device.

The datasets here are small (MNIST: 188 MB as float32), so the fastest input pipeline is none at all:
images are normalized once on the device and every mini-batch is an index into them. No worker
processes, no per-step host->device copy; the only transfer is one index permutation per epoch.
"""

from __future__ import annotations

from typing import Iterator, Optional

import numpy as np
import pytorch_lightning as pl
import torch

from ..config import DatasetConfig, Normalization
from .embedded import EMBEDDED
from .prepared import PreparedDataError, load_prepared, manifest_path


def normalize(x: torch.Tensor, how: Normalization) -> torch.Tensor:
    """uint8 images [N,H,W] -> float32 [N, H*W]."""
    x = x.reshape(len(x), -1).float()
    if Normalization(how) is Normalization.centered:
        return (x - 127.5) / 255.0
    return x / 255.0


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of epoch `epoch`: a function of (seed, epoch) alone, so a resumed run sees the same
    batches as an uninterrupted one, on any device."""
    state = int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])
    return torch.randperm(n, generator=torch.Generator().manual_seed(state))


class DeviceBatches:
    """Endless shuffled mini-batches (x, y) from on-device tensors, starting at a given update."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int,
                 start_update: int = 0) -> None:
        self.x, self.y, self.seed, self.start_update = x, y, seed, start_update
        self.batch_size = min(batch_size, len(x))
        self.per_epoch = len(x) // self.batch_size  # a partial last batch is dropped

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        step, epoch, perm = self.start_update, -1, None
        while True:
            e, i = divmod(step, self.per_epoch)
            if e != epoch:
                epoch, perm = e, epoch_permutation(len(self.x), self.seed, e).to(self.x.device)
            idx = perm[i * self.batch_size:(i + 1) * self.batch_size]
            yield self.x[idx], self.y[idx]
            step += 1


class EvalBatches:
    """Consecutive chunks (x, y) of one split, in order. A class rather than a list so that Lightning
    treats it as one dataloader instead of flattening the tensors inside it."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> None:
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(0, len(self.x), self.batch_size):
            yield self.x[i:i + self.batch_size], self.y[i:i + self.batch_size]


class PreparedDataModule(pl.LightningDataModule):
    def __init__(self, cfg: DatasetConfig, batch_size: int, eval_batch_size: int, seed: int) -> None:
        super().__init__()
        self.cfg, self.batch_size, self.eval_batch_size, self.seed = cfg, batch_size, eval_batch_size, seed
        self.tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.cfg_has_val = True  # known after setup()

    @property
    def eval_splits(self) -> list[str]:
        """Splits evaluated at every evaluation: val (when used) and test."""
        return ["val", "test"] if self.cfg.use_validation and self.cfg_has_val else ["test"]

    def prepare_data(self) -> None:
        """Embedded datasets are prepared on first use; downloaded ones come from the pipeline."""
        if not manifest_path(self.cfg.data_dir, self.cfg.name).is_file() and self.cfg.name in EMBEDDED:
            EMBEDDED[self.cfg.name](self.cfg.data_dir)

    def setup(self, stage: Optional[str] = None, device: Optional[torch.device] = None) -> None:
        if self.tensors:
            return
        if device is None:
            device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        arrays = dict(load_prepared(self.cfg.data_dir, self.cfg.name).arrays)
        self.cfg_has_val = len(arrays["val"][1]) > 0
        if not self.cfg.use_validation and self.cfg_has_val:
            (tx, ty), (vx, vy) = arrays["train"], arrays["val"]
            arrays["train"] = (np.concatenate([tx, vx]), np.concatenate([ty, vy]))
        if self.cfg.train_subset is not None:
            n = len(arrays["train"][1])
            if self.cfg.train_subset > n:
                raise PreparedDataError(f"dataset.train_subset={self.cfg.train_subset}: allowed is at most "
                                        f"{n}, the training examples of {self.cfg.name}")
            arrays["train"] = tuple(a[: self.cfg.train_subset] for a in arrays["train"])
        x0, y_all = arrays["train"][0], np.concatenate([arrays[s][1] for s in arrays])
        if x0[0].size != self.cfg.input_dim or int(y_all.max()) >= self.cfg.num_classes:
            raise PreparedDataError(
                f"dataset {self.cfg.name}: images of {x0[0].size} pixels and labels up to {int(y_all.max())} "
                f"do not fit dataset.input_dim={self.cfg.input_dim}, dataset.num_classes={self.cfg.num_classes}")
        for split, (x, y) in arrays.items():
            xt = torch.from_numpy(np.ascontiguousarray(x)).to(device)
            self.tensors[split] = (normalize(xt, self.cfg.normalization),
                                   torch.from_numpy(y.astype(np.int64)).to(device))

    def train_dataloader(self) -> DeviceBatches:
        start = self.trainer.global_step if self.trainer is not None else 0
        x, y = self.tensors["train"]
        return DeviceBatches(x, y, self.batch_size, self.seed, start_update=start)

    def val_dataloader(self) -> list[EvalBatches]:
        return [EvalBatches(*self.tensors[s], self.eval_batch_size) for s in self.eval_splits]

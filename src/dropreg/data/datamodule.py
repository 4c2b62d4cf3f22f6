"""Lightning data module that keeps a whole prepared dataset as tensors on the training device.

The datasets here are small (MNIST: 188 MB as float32), so the fastest input pipeline is none at all:
images are normalized once on the device and every mini-batch is an index into them (see
`dropreg.batches`). No worker processes, no per-step host->device copy of images. The training
"dataloader" yields evaluation intervals, not batches: the module runs a whole interval of updates
per Lightning step.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional

import numpy as np
import pytorch_lightning as pl
import torch

from ..schema import DatasetConfig, Normalization, TrainConfig
from .embedded import EMBEDDED
from .prepared import PreparedDataError, load_manifest, load_prepared, manifest_path


def normalize(x: torch.Tensor, how: Normalization) -> torch.Tensor:
    """uint8 images [N, H, W] -> float32 [N, H*W]."""
    x = x.reshape(x.shape[0], int(np.prod(x.shape[1:]))).float()
    if Normalization(how) is Normalization.centered:
        return (x - 127.5) / 255.0
    return x / 255.0


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


class Intervals:
    """The training "dataloader": (first update, number of updates) of each remaining interval."""

    def __init__(self, intervals: list[tuple[int, int]]) -> None:
        self.intervals = intervals

    def __len__(self) -> int:
        return len(self.intervals)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self.intervals)


class PreparedDataModule(pl.LightningDataModule):
    def __init__(self, cfg: DatasetConfig, eval_batch_size: int) -> None:
        super().__init__()
        self.cfg, self.eval_batch_size = cfg, eval_batch_size
        self.tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.manifest: dict[str, Any] = {}

    def prepare_data(self) -> None:
        """Embedded datasets are prepared on first use; downloaded ones come from the pipeline."""
        if not manifest_path(self.cfg.data_dir, self.cfg.name).is_file() and self.cfg.name in EMBEDDED:
            EMBEDDED[self.cfg.name](self.cfg.data_dir)

    def check(self, runs: list[TrainConfig]) -> dict[str, Any]:
        """Before any training: the dataset is prepared and fits every run (input size, classes,
        training subset between one batch and the training examples). Returns the manifest."""
        self.prepare_data()
        self.manifest = load_manifest(self.cfg.data_dir, self.cfg.name)
        pixels = int(np.prod(self.manifest["image_shape"]))
        if pixels != self.cfg.input_dim:
            raise PreparedDataError(f"dataset {self.cfg.name}: images of {pixels} pixels do not fit "
                                    f"dataset.input_dim={self.cfg.input_dim}")
        classes = [len(c) for c in self.manifest["class_counts"].values()]
        if max(classes) > self.cfg.num_classes:
            raise PreparedDataError(f"dataset {self.cfg.name}: labels up to {max(classes) - 1} do not fit "
                                    f"dataset.num_classes={self.cfg.num_classes}")
        n = self.train_size
        for run in runs:
            subset, batch = run.dataset.train_subset, run.optim.batch_size
            if subset is not None and subset > n:
                raise PreparedDataError(f"dataset.train_subset={subset}: allowed is at most {n}, the training "
                                        f"examples of {self.cfg.name}")
            if (subset or n) < batch:
                raise PreparedDataError(f"optim.batch_size={batch}: allowed is at most the {subset or n} training "
                                        f"examples ({'dataset.train_subset' if subset else self.cfg.name})")
        return self.manifest

    @property
    def has_val(self) -> bool:
        return self.manifest["counts"]["val"] > 0

    @property
    def train_size(self) -> int:
        counts = self.manifest["counts"]
        return counts["train"] + (0 if self.cfg.use_validation else counts["val"])

    @property
    def eval_splits(self) -> list[str]:
        """Splits evaluated at every evaluation: val (when used and not empty) and test."""
        return ["val", "test"] if self.cfg.use_validation and self.has_val else ["test"]

    def setup(self, stage: Optional[str] = None, device: Optional[torch.device] = None) -> None:
        if self.tensors:
            return
        if device is None:
            device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        if not self.manifest:
            self.check([])
        arrays = dict(load_prepared(self.cfg.data_dir, self.cfg.name).arrays)
        if not self.cfg.use_validation and len(arrays["val"][1]):
            (tx, ty), (vx, vy) = arrays["train"], arrays["val"]
            arrays["train"] = (np.concatenate([tx, vx]), np.concatenate([ty, vy]))
        for split, (x, y) in arrays.items():
            xt = torch.from_numpy(np.ascontiguousarray(x)).to(device)
            self.tensors[split] = (normalize(xt, self.cfg.normalization),
                                   torch.from_numpy(y.astype(np.int64)).to(device))

    def train_dataloader(self) -> Intervals:
        return Intervals(self.trainer.lightning_module.model.intervals())

    def val_dataloader(self) -> list[EvalBatches]:
        return [EvalBatches(*self.tensors[s], self.eval_batch_size) for s in self.eval_splits]

"""Prepare MNIST and Fashion-MNIST from their four IDX files.

Test = the official 10,000; the official 60,000 training images are split with a fixed seed into
50,000 train and 10,000 validation (the paper's protocol, Appendix B.1). The held-out indices are
recorded in the manifest; `dataset.use_validation=false` merges them back (the paper's final runs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .download import RemoteFile, verify
from .idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx
from .prepared import PreparedDataError, md5sum, save_prepared


def _read_pair(raw_dir: Path, images: RemoteFile, labels: RemoteFile) -> tuple[np.ndarray, np.ndarray]:
    x = read_idx(raw_dir / images.name, IMAGES_MAGIC)
    y = read_idx(raw_dir / labels.name, LABELS_MAGIC)
    if len(x) != len(y):
        raise PreparedDataError(f"{raw_dir / images.name}: {len(x)} images but {len(y)} labels in {labels.name}")
    return x, y


def prepare_idx_dataset(name: str, files: tuple[RemoteFile, ...], raw_dir: str | Path, out_dir: str | Path,
                        val_size: int, seed: int) -> Path:
    raw_dir = Path(raw_dir)
    by_name = {f.name: f for f in files}
    train_x, train_y = _read_pair(raw_dir, by_name["train-images-idx3-ubyte.gz"], by_name["train-labels-idx1-ubyte.gz"])
    test_x, test_y = _read_pair(raw_dir, by_name["t10k-images-idx3-ubyte.gz"], by_name["t10k-labels-idx1-ubyte.gz"])
    if not 0 <= val_size < len(train_y):
        raise PreparedDataError(f"{name}.val_size={val_size}: allowed is 0 to {len(train_y) - 1}")
    held_out = np.sort(np.random.default_rng(seed).permutation(len(train_y))[:val_size])
    keep = np.setdiff1d(np.arange(len(train_y)), held_out)
    splits = {"train": (train_x[keep], train_y[keep]), "val": (train_x[held_out], train_y[held_out]),
              "test": (test_x, test_y)}
    sources = []
    for f in files:
        _, how = verify(raw_dir / f.name, f)
        sources.append({"file": f.name, "md5": md5sum(raw_dir / f.name), "verified_by": how,
                        "expected_md5": f.md5, "urls": list(f.urls)})
    manifest = {
        "sources": sources,
        "split": {"test": "the official test set",
                  "validation": f"{val_size} training images drawn at random (numpy default_rng, seed {seed}); "
                                "the rest train",
                  "seed": seed, "val_source_indices": held_out.tolist()},
        "skipped": [],
        "removed": {},
    }
    return save_prepared(out_dir, name, splits, manifest)

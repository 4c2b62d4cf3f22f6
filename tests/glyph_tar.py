"""Build notMNIST-style archives: <root>/<letter>/<name>.png, 28x28 grayscale, as tar.gz."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import SHARED_DATA

LETTERS = "ABCDEFGHIJ"
SAMPLE = SHARED_DATA / "notmnist-sample"


def png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def glyphs(per_class: int, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Distinct glyphs per letter: real notMNIST ones from ../shared/data when present, else generated."""
    if (SAMPLE / "t10k-images-idx3-ubyte.gz").is_file():
        from dropreg.data.idx import read_idx

        images = read_idx(SAMPLE / "t10k-images-idx3-ubyte.gz")
        labels = read_idx(SAMPLE / "t10k-labels-idx1-ubyte.gz")
        _, first = np.unique(images.reshape(len(images), -1), axis=0, return_index=True)  # drop duplicates
        unique = np.zeros(len(images), bool)
        unique[first] = True
        out = {}
        for c, letter in enumerate(LETTERS):
            idx = np.flatnonzero((labels == c) & unique)
            assert len(idx) >= per_class, f"sample has {len(idx)} distinct {letter}s"
            out[letter] = [images[i] for i in idx[:per_class]]
        return out
    # generated: a random template per letter plus per-image noise, so every image is distinct and the
    # classes can be learned (training tests need better than chance, as with real glyphs)
    rng = np.random.default_rng(seed)
    out = {}
    for letter in LETTERS:
        template = rng.integers(0, 256, (28, 28)).astype(np.int16)
        out[letter] = [np.clip(template + rng.integers(-60, 61, (28, 28)), 0, 255).astype(np.uint8)
                       for _ in range(per_class)]
    return out


def write_tar(path: Path, root: str, members: list[tuple[str, str, bytes]]) -> Path:
    """members: (letter folder, file name, bytes)."""
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for letter, name, data in members:
            info = tarfile.TarInfo(f"{root}/{letter}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path

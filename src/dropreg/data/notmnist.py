"""Prepare notMNIST (letters A–J as 28×28 PNGs) as in Udacity's deep-learning assignment 1.

The archives are read as streams (`tarfile` mode "r|gz"): half a million PNGs are decoded in memory,
never unpacked onto disk. Unreadable PNGs (the archives have a few) are skipped and listed in the
manifest. Splits, each balanced over the ten letters and drawn with a fixed seed: train and
validation from notMNIST_large, test from notMNIST_small. Exact duplicates across splits (the same
pixels; about 10 % of the assignment's validation set) are then removed by content hash: from
validation whatever is also in train, from test whatever is also in train or validation. Pixels stay
uint8; the (x − 127.5)/255 normalization is applied by the data module (`normalization: centered`).
"""

from __future__ import annotations

import hashlib
import io
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .download import RemoteFile, verify
from .prepared import PreparedDataError, md5sum, save_prepared

LETTERS = "ABCDEFGHIJ"
_BLOCK = 16_384  # images per buffer block: memory grows in steps of 12.8 MB


@dataclass
class GlyphArchive:
    images: np.ndarray  # uint8 [N, 28, 28]
    labels: np.ndarray  # uint8 [N], 0..9 = A..J
    skipped: list[str] = field(default_factory=list)  # unreadable members
    seconds: float = 0.0


def read_glyph_tar(path: str | Path) -> GlyphArchive:
    """Decode every `<root>/<letter>/<file>.png` of a tar.gz stream; skip what cannot be decoded."""
    started = time.perf_counter()
    blocks, labels, skipped = [], [], []
    block, fill = np.empty((_BLOCK, 28, 28), np.uint8), 0
    try:
        with tarfile.open(path, mode="r|gz") as tar:
            for member in tar:
                if not member.isfile() or not member.name.lower().endswith(".png"):
                    continue
                letter = Path(member.name).parent.name
                if letter not in LETTERS:
                    skipped.append(f"{member.name} (not in a folder A-J)")
                    continue
                data = tar.extractfile(member).read()
                try:
                    with Image.open(io.BytesIO(data)) as im:
                        pixels = np.asarray(im.convert("L"))
                except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
                    skipped.append(f"{member.name} ({type(exc).__name__})")
                    continue
                if pixels.shape != (28, 28):
                    skipped.append(f"{member.name} (size {pixels.shape[1]}x{pixels.shape[0]})")
                    continue
                block[fill] = pixels
                labels.append(LETTERS.index(letter))
                fill += 1
                if fill == _BLOCK:
                    blocks.append(block)
                    block, fill = np.empty((_BLOCK, 28, 28), np.uint8), 0
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise PreparedDataError(f"{path}: damaged or truncated archive ({exc})") from exc
    blocks.append(block[:fill])
    images = np.concatenate(blocks) if len(blocks) > 1 else blocks[0].copy()
    return GlyphArchive(images, np.asarray(labels, np.uint8), skipped, time.perf_counter() - started)


def balanced_sample(labels: np.ndarray, sizes: dict[str, int], rng: np.random.Generator,
                    source: str) -> dict[str, np.ndarray]:
    """Disjoint index sets, `sizes[split] / 10` of every letter each."""
    out: dict[str, list[np.ndarray]] = {s: [] for s in sizes}
    for c, letter in enumerate(LETTERS):
        idx = rng.permutation(np.flatnonzero(labels == c))
        need = sum(n // len(LETTERS) for n in sizes.values())
        if len(idx) < need:
            raise PreparedDataError(f"{source}: letter {letter} has {len(idx)} readable images, "
                                    f"the splits {sizes} need {need}")
        start = 0
        for split, n in sizes.items():
            out[split].append(idx[start:start + n // len(LETTERS)])
            start += n // len(LETTERS)
    return {s: rng.permutation(np.concatenate(parts)) for s, parts in out.items()}


def _digests(images: np.ndarray) -> list[bytes]:
    return [hashlib.sha1(im.tobytes()).digest() for im in images]


def remove_cross_split_duplicates(splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, int]:
    """Drop from each split the images already in an earlier split (train < val < test); in place."""
    seen: set[bytes] = set()
    removed = {}
    for split in ("train", "val", "test"):
        x, y = splits[split]
        digests = _digests(x)
        keep = np.fromiter((d not in seen for d in digests), bool, len(digests))
        removed[split] = int((~keep).sum())
        splits[split] = (x[keep], y[keep])
        seen.update(digests)
    return removed


def prepare_notmnist(files: tuple[RemoteFile, ...], raw_dir: str | Path, out_dir: str | Path,
                     train_size: int, val_size: int, test_size: int, seed: int,
                     name: str = "notmnist") -> Path:
    raw_dir = Path(raw_dir)
    for n, what in ((train_size, "train_size"), (val_size, "val_size"), (test_size, "test_size")):
        if n <= 0 or n % len(LETTERS):
            raise PreparedDataError(f"notmnist.{what}={n}: allowed is a positive multiple of {len(LETTERS)}")
    by_name = {f.name: f for f in files}
    large_file, small_file = by_name["notMNIST_large.tar.gz"], by_name["notMNIST_small.tar.gz"]
    large = read_glyph_tar(raw_dir / large_file.name)
    small = read_glyph_tar(raw_dir / small_file.name)
    rng = np.random.default_rng(seed)
    from_large = balanced_sample(large.labels, {"train": train_size, "val": val_size}, rng, large_file.name)
    from_small = balanced_sample(small.labels, {"test": test_size}, rng, small_file.name)
    splits = {s: (large.images[i], large.labels[i]) for s, i in from_large.items()}
    splits["test"] = (small.images[from_small["test"]], small.labels[from_small["test"]])
    removed = remove_cross_split_duplicates(splits)
    sources = []
    for f, archive in ((large_file, large), (small_file, small)):
        path = raw_dir / f.name
        problem, how = verify(path, f)
        sources.append({"file": f.name, "bytes": path.stat().st_size, "md5": md5sum(path),
                        "verified_by": how, "size_ok": problem is None,
                        "note": "no md5 is published for this archive; its size was verified" if not f.md5 else "",
                        "readable_images": int(len(archive.labels)), "unreadable": len(archive.skipped),
                        "images_per_second": round(len(archive.labels) / max(archive.seconds, 1e-9))})
    manifest = {
        "sources": sources,
        "split": {"method": "balanced over letters A-J, drawn at random (numpy default_rng)", "seed": seed,
                  "train": f"{train_size} from notMNIST_large", "val": f"{val_size} from notMNIST_large",
                  "test": f"{test_size} from notMNIST_small", "labels": "0-9 = A-J"},
        "skipped": large.skipped + small.skipped,
        "removed": {"exact_duplicates_of_earlier_splits": removed,
                    "rule": "by SHA-1 of the pixels: val drops images in train, test drops images in train or val"},
        "normalization": "(x - 127.5) / 255, applied by the data module",
    }
    out = save_prepared(out_dir, name, splits, manifest)
    print(f"dropreg.data: notMNIST: {len(large.labels) + len(small.labels)} images decoded "
          f"({len(manifest['skipped'])} unreadable skipped), removed duplicates {removed}", file=sys.stderr)
    return out

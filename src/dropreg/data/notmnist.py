"""Prepare notMNIST (letters A–J as 28×28 PNGs) as in Udacity's deep-learning assignment 1.

The archives are read as streams (`tarfile` mode "r|gz"): half a million PNGs are decoded in memory,
never unpacked onto disk. An extracted folder (`notMNIST_large/A/...png`, as users often have it) is
read in place instead. No md5 is published: an archive of the published size is accepted as is; a
repacked archive or a folder when its content checks (GlyphCheck: letters, counts, PNG format).
Unreadable PNGs (the archives have a few) are skipped and listed in the manifest. Splits, each
balanced over the ten letters and drawn with a fixed seed: train and validation from
notMNIST_large, test from notMNIST_small. Exact duplicates across splits (the same
pixels; about 10 % of the assignment's validation set) are then removed by content hash: from
validation whatever is also in train, from test whatever is also in train or validation; copies
within one split are kept and counted in the manifest. Pixels stay
uint8; the (x − 127.5)/255 normalization is applied by the data module (`normalization: centered`).
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
from PIL import Image, UnidentifiedImageError

from .download import CONTENT_CHECK, FOLDER_CHECK, PUBLISHED_SIZE, RemoteFile, verify_source
from .prepared import PreparedDataError, md5sum, save_prepared

LETTERS = "ABCDEFGHIJ"
_BLOCK = 16_384  # images per buffer block: memory grows in steps of 12.8 MB

# Readable glyphs per letter in the published sets: notMNIST_small 1,872-1,873 (18,724 of 18,726 files;
# 2 are empty), notMNIST_large 52,909-52,912 (529,114, as the Udacity assignment prints them). A copy
# whose size is not the published one passes the content check when every letter has this many
# 28x28 8-bit grayscale PNGs: about 2 % either side, so a repack that lost or gained a few files
# passes, and a truncated download or a different set does not.
PER_LETTER = {"notMNIST_small": (1_830, 1_910), "notMNIST_large": (51_800, 54_000)}
GLYPH_FORMAT = "28x28 8-bit grayscale PNG"
_PNG = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class GlyphCheck:
    """The content check of a notMNIST set that is not byte for byte the published archive (a
    repack, or the extracted folder): exactly the letter folders A-J, `per_letter` glyphs in each,
    every PNG 28x28 8-bit grayscale. Reads only each PNG's header, so it costs a fraction of decoding."""

    per_letter: tuple[int, int]

    def __call__(self, path: Path) -> tuple[Optional[str], dict[str, Any]]:
        started = time.perf_counter()
        counts: dict[str, int] = {}
        folders: set[str] = set()
        unreadable, wrong, first_wrong = 0, 0, ""
        try:
            for name, letter, read in _members(Path(path)):
                folders.add(letter)
                fmt = _png_format(read(26))
                if fmt is None:
                    unreadable += 1
                elif fmt != (28, 28, 8, 0):
                    wrong += 1
                    first_wrong = first_wrong or (f"{name} is {fmt[0]}x{fmt[1]}, bit depth {fmt[2]}, "
                                                  f"colour type {fmt[3]}")
                else:
                    counts[letter] = counts.get(letter, 0) + 1
        except (tarfile.TarError, EOFError, OSError) as exc:
            return f"damaged or truncated archive ({exc})", {}
        lo, hi = self.per_letter
        numbers = {"letter_folders": "".join(sorted(folders)),
                   "glyphs_per_letter": {c: counts.get(c, 0) for c in sorted(folders | set(LETTERS))},
                   "allowed_per_letter": [lo, hi], "glyph_format": GLYPH_FORMAT,
                   "unreadable": unreadable, "other_format": wrong,
                   "seconds": round(time.perf_counter() - started, 2)}
        return _glyph_problem(folders, counts, wrong, first_wrong, lo, hi), numbers


def _glyph_problem(folders: set[str], counts: dict[str, int], wrong: int, first_wrong: str,
                   lo: int, hi: int) -> Optional[str]:
    if folders != set(LETTERS):
        found = "".join(sorted(folders)) or "none"
        missing, extra = set(LETTERS) - folders, folders - set(LETTERS)
        what = "; ".join(x for x in (missing and f"missing {','.join(sorted(missing))}",
                                     extra and f"not a letter A-J: {','.join(sorted(extra))}") if x)
        return f"{len(folders)} folders of PNGs ({found}; {what}), expected exactly the ten letter folders A-J"
    if wrong:
        return f"{wrong:,} glyph(s) not {GLYPH_FORMAT}, e.g. {first_wrong}"
    bad = [c for c in LETTERS if not lo <= counts.get(c, 0) <= hi]
    if bad:
        listed = ", ".join(f"{c} {counts.get(c, 0):,}" for c in bad)
        return f"glyphs per letter {listed}; the published set has {lo:,}-{hi:,} per letter"
    return None


def _png_format(head: bytes) -> Optional[tuple[int, int, int, int]]:
    """(width, height, bit depth, colour type) from a PNG's IHDR, or None if it is not a PNG."""
    if len(head) < 26 or head[:8] != _PNG or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big"), head[24], head[25]


def _members(path: Path) -> Iterator[tuple[str, str, Any]]:
    """(name, letter folder, read(n=-1)) of every PNG of a tar.gz or of an extracted folder, in order:
    the archive's, or the folder's sorted by name. `name` is <root>/<letter>/<file> either way."""
    if path.is_dir():
        for letter in sorted(e.name for e in os.scandir(path) if e.is_dir()):
            for file in sorted(e.name for e in os.scandir(path / letter) if e.is_file()):
                if file.lower().endswith(".png"):
                    full = path / letter / file
                    yield f"{path.name}/{letter}/{file}", letter, lambda n=-1, full=full: _read(full, n)
        return
    with tarfile.open(path, mode="r|gz") as tar:
        for member in tar:
            if member.isfile() and member.name.lower().endswith(".png"):
                yield member.name, Path(member.name).parent.name, tar.extractfile(member).read


def _read(path: Path, n: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


@dataclass
class GlyphArchive:
    images: np.ndarray  # uint8 [N, 28, 28]
    labels: np.ndarray  # uint8 [N], 0..9 = A..J
    skipped: list[str] = field(default_factory=list)  # unreadable members
    seconds: float = 0.0


def read_glyphs(path: str | Path) -> GlyphArchive:
    """Decode every `<root>/<letter>/<file>.png` of a tar.gz stream, or every `<letter>/<file>.png`
    of an extracted folder `<root>`; skip what cannot be decoded."""
    started = time.perf_counter()
    blocks, labels, skipped = [], [], []
    block, fill = np.empty((_BLOCK, 28, 28), np.uint8), 0
    try:
        for name, letter, read in _members(Path(path)):
            if letter not in LETTERS:
                skipped.append(f"{name} (not in a folder A-J)")
                continue
            data = read()
            try:
                with Image.open(io.BytesIO(data)) as im:
                    pixels = np.asarray(im.convert("L"))
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
                skipped.append(f"{name} ({type(exc).__name__})")
                continue
            if pixels.shape != (28, 28):
                skipped.append(f"{name} (size {pixels.shape[1]}x{pixels.shape[0]})")
                continue
            block[fill] = pixels
            labels.append(LETTERS.index(letter))
            fill += 1
            if fill == _BLOCK:
                blocks.append(block)
                block, fill = np.empty((_BLOCK, 28, 28), np.uint8), 0
    except (tarfile.TarError, EOFError, OSError) as exc:
        what = "unreadable folder" if Path(path).is_dir() else "damaged or truncated archive"
        raise PreparedDataError(f"{path}: {what} ({exc})") from exc
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


def duplicate_counts(images: np.ndarray, labels: np.ndarray) -> dict[str, int]:
    """Exact copies (same pixels) within one set: how many images repeat an earlier one, and how many
    distinct images occur under more than one letter."""
    letter_of: dict[bytes, int] = {}
    several: set[bytes] = set()
    for d, y in zip(_digests(images), labels.tolist()):
        if letter_of.setdefault(d, y) != y:
            several.add(d)
    return {"distinct_images": len(letter_of), "extra_copies": len(labels) - len(letter_of),
            "distinct_images_under_several_letters": len(several)}


_NOTES = {PUBLISHED_SIZE: "no md5 is published for this archive; its size was verified",
          CONTENT_CHECK: "no md5 is published for this archive and its size is not the published one; "
                         "its content was checked instead (content_check)",
          FOLDER_CHECK: "the archive's extracted folder, read in place; no md5 or size is published for it, "
                        "its content was checked (content_check)"}


def prepare_notmnist(files: tuple[RemoteFile, ...], raw_dir: str | Path, out_dir: str | Path,
                     train_size: int, val_size: int, test_size: int, seed: int,
                     name: str = "notmnist", paths: Optional[dict[str, str | Path]] = None) -> Path:
    """`paths`: where each of `files` is, an archive or an extracted folder (what the download step
    returned); by default `<raw_dir>/<file>`. Each is verified before anything is decoded."""
    raw_dir = Path(raw_dir)
    for n, what in ((train_size, "train_size"), (val_size, "val_size"), (test_size, "test_size")):
        if n <= 0 or n % len(LETTERS):
            raise PreparedDataError(f"notmnist.{what}={n}: allowed is a positive multiple of {len(LETTERS)}")
    by_name = {f.name: f for f in files}
    large_file, small_file = by_name["notMNIST_large.tar.gz"], by_name["notMNIST_small.tar.gz"]
    where = {f.name: Path((paths or {}).get(f.name, raw_dir / f.name)) for f in (large_file, small_file)}
    checked = {}
    for f, path in ((large_file, where[large_file.name]), (small_file, where[small_file.name])):
        if not path.exists():
            raise PreparedDataError(f"{path}: not found; run `python -m dropreg.data download notmnist` first")
        checked[f.name] = verify_source(path, f)
        if checked[f.name].problem:
            raise PreparedDataError(f"{path}: {checked[f.name].problem}")
    large = read_glyphs(where[large_file.name])
    small = read_glyphs(where[small_file.name])
    rng = np.random.default_rng(seed)
    from_large = balanced_sample(large.labels, {"train": train_size, "val": val_size}, rng, large_file.name)
    from_small = balanced_sample(small.labels, {"test": test_size}, rng, small_file.name)
    splits = {s: (large.images[i], large.labels[i]) for s, i in from_large.items()}
    splits["test"] = (small.images[from_small["test"]], small.labels[from_small["test"]])
    removed = remove_cross_split_duplicates(splits)
    within = {s: len(x) - len(set(_digests(x))) for s, (x, _) in splits.items()}
    sources = []
    for f, archive in ((large_file, large), (small_file, small)):
        path, v = where[f.name], checked[f.name]
        entry: dict[str, Any] = {"file": f.name}
        if path.is_dir():
            entry["folder"] = str(path.resolve())
        else:
            entry.update(bytes=path.stat().st_size, md5=md5sum(path))
        entry.update({"verified_by": v.how, "size_ok": path.is_file() and path.stat().st_size == f.size,
                      "content_check": v.content, "note": _NOTES.get(v.how, ""),
                      "readable_images": int(len(archive.labels)), "unreadable": len(archive.skipped),
                      "exact_duplicates": duplicate_counts(archive.images, archive.labels),
                      "images_per_second": round(len(archive.labels) / max(archive.seconds, 1e-9))})
        sources.append(entry)
    manifest = {
        "sources": sources,
        "split": {"method": "balanced over letters A-J, drawn at random (numpy default_rng)", "seed": seed,
                  "train": f"{train_size} from notMNIST_large", "val": f"{val_size} from notMNIST_large",
                  "test": f"{test_size} from notMNIST_small", "labels": "0-9 = A-J"},
        "skipped": large.skipped + small.skipped,
        "removed": {"exact_duplicates_of_earlier_splits": removed,
                    "rule": "by SHA-1 of the pixels: val drops images in train, test drops images in train or val; "
                            "copies within one split are kept (exact_duplicates_within_split)"},
        "exact_duplicates_within_split": within,
        "normalization": "(x - 127.5) / 255, applied by the data module",
    }
    out = save_prepared(out_dir, name, splits, manifest)
    copies = {s["file"]: s["exact_duplicates"]["extra_copies"] for s in sources}
    print(f"dropreg.data: notMNIST: {len(large.labels) + len(small.labels)} images decoded "
          f"({len(manifest['skipped'])} unreadable skipped), exact copies within each source {copies}, "
          f"removed cross-split duplicates {removed}, kept within-split copies {within}", file=sys.stderr)
    return out

"""The prepared-dataset format every training run reads.

`<data_dir>/<name>.npz` holds uint8 arrays `<split>_x` (N, H, W) and `<split>_y` (N,) for the splits
train, val and test (val may be empty). `<data_dir>/<name>.manifest.json` describes them: sources and
their checksums, split seed and method, per-split and per-class counts, skipped or removed items, and
the md5 of the .npz. The manifest is written last, so a dataset without one is not prepared.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path, write_json

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")


class PreparedDataError(RuntimeError):
    """A prepared dataset that is missing, incomplete or inconsistent with its manifest."""


def npz_path(data_dir: str | Path, name: str) -> Path:
    return Path(data_dir) / f"{name}.npz"


def manifest_path(data_dir: str | Path, name: str) -> Path:
    return Path(data_dir) / f"{name}.manifest.json"


def md5sum(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass
class PreparedData:
    arrays: dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (images uint8 [N,H,W], labels uint8 [N])
    manifest: dict[str, Any]


def save_prepared(data_dir: str | Path, name: str, splits: dict[str, tuple[np.ndarray, np.ndarray]],
                  manifest: dict[str, Any]) -> Path:
    """Write `<name>.npz` then `<name>.manifest.json` (both atomically); return the .npz path."""
    arrays: dict[str, np.ndarray] = {}
    for split in SPLITS:
        x, y = splits.get(split, (np.zeros((0, 28, 28), np.uint8), np.zeros((0,), np.uint8)))
        if x.dtype != np.uint8 or x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise PreparedDataError(f"{name}: split {split!r} must be uint8 images [N,H,W] with N labels, "
                                    f"got {x.dtype} {x.shape} and {y.shape}")
        arrays[f"{split}_x"], arrays[f"{split}_y"] = x, y.astype(np.uint8)
    out = npz_path(data_dir, name)
    with atomic_path(out) as tmp:
        _write_npz(tmp, arrays)
        npz_md5 = md5sum(tmp)
    full = {
        "format_version": FORMAT_VERSION,
        "dataset": name,
        **manifest,
        "image_shape": list(arrays["train_x"].shape[1:]),
        "counts": {s: int(len(arrays[f"{s}_y"])) for s in SPLITS},
        "class_counts": {s: np.bincount(arrays[f"{s}_y"], minlength=1).tolist() for s in SPLITS},
        "npz_md5": npz_md5,
    }
    write_json(manifest_path(data_dir, name), full)
    return out


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like np.savez_compressed, but byte-identical for identical arrays (fixed zip timestamps),
    so the same preparation gives the same md5 on every machine."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, arr in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(arr), allow_pickle=False)


_REMEDY = "prepare it again (python -m dropreg.data prepare {name}, or delete it and rerun the pipeline)"


def load_manifest(data_dir: str | Path, name: str) -> dict[str, Any]:
    """Read and check `<name>.manifest.json`; a missing, unreadable or incomplete one is one error."""
    npz, man = npz_path(data_dir, name), manifest_path(data_dir, name)
    for path in (npz, man):
        if not path.is_file():
            raise PreparedDataError(
                f"{path}: not found; dataset {name!r} is not prepared (run `python -m dropreg.data "
                f"prepare {name}` or the pipeline's prepare rule)")
    remedy = _REMEDY.format(name=name)
    try:
        manifest = json.loads(man.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PreparedDataError(f"{man}: not a readable JSON manifest ({exc.__class__.__name__}); {remedy}") from exc
    if not isinstance(manifest, dict):
        raise PreparedDataError(f"{man}: a manifest is a JSON object, this is a {type(manifest).__name__}; {remedy}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise PreparedDataError(f"{man}: format_version={manifest.get('format_version')!r}, "
                                f"this dropreg reads {FORMAT_VERSION}; {remedy}")
    counts = manifest.get("counts")
    problems = [k for k in ("npz_md5", "image_shape", "class_counts") if k not in manifest]
    if not isinstance(counts, dict) or any(not isinstance(counts.get(s), int) for s in SPLITS):
        problems.append("counts")
    if problems:
        raise PreparedDataError(f"{man}: lacks {', '.join(problems)}; {remedy}")
    return manifest


def load_prepared(data_dir: str | Path, name: str, verify: bool = True) -> PreparedData:
    """Read a prepared dataset; check it against its manifest (md5, counts)."""
    npz, man = npz_path(data_dir, name), manifest_path(data_dir, name)
    manifest = load_manifest(data_dir, name)
    remedy = _REMEDY.format(name=name)
    if verify and (actual := md5sum(npz)) != manifest["npz_md5"]:
        raise PreparedDataError(f"{npz}: md5 {actual} differs from {manifest['npz_md5']} in {man.name}; "
                                "the file changed after preparation, " + remedy)
    try:
        with np.load(npz, allow_pickle=False) as z:
            arrays = {s: (z[f"{s}_x"], z[f"{s}_y"]) for s in SPLITS}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise PreparedDataError(f"{npz}: not a readable prepared dataset ({' '.join(str(exc).split())[:120]}); "
                                f"{remedy}") from exc
    for s in SPLITS:
        if len(arrays[s][1]) != manifest["counts"][s]:
            raise PreparedDataError(f"{npz}: split {s} has {len(arrays[s][1])} examples, "
                                    f"manifest says {manifest['counts'][s]}; {remedy}")
    return PreparedData(arrays, manifest)

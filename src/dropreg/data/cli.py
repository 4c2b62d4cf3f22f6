"""`python -m dropreg.data download|prepare <dataset> [key=value ...]` (keys of conf/data.yaml).

download: fetch and verify the raw files into <raw_dir>/<dataset>/.
prepare:  download if needed (no request when the files are there and valid), then write
          <prepared_dir>/<dataset>.npz and its manifest.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..atomic import DiskFull
from .sources import RAW_FILES

DATASETS = ("mnist", "fashion_mnist", "notmnist", "mnist5k")


def download(dataset: str, cfg) -> list[Path]:
    """Fetch and verify every raw file; record them in <raw_dir>/<dataset>/files.json (the
    pipeline's download output). An extracted folder found in download.local_dir stands in for its
    archive without being copied: files.json records its path and content check, and the path is
    returned in the archive's place."""
    from ..atomic import write_json
    from .download import DownloadOptions, fetch, verify_source
    from .prepared import md5sum

    opts = DownloadOptions(**vars(cfg.download))
    dest = Path(cfg.raw_dir) / dataset
    files = RAW_FILES.get(dataset, ())
    paths = [fetch(f, dest, dataset, opts) for f in files]
    entries = []
    for f, p in zip(files, paths):
        v = verify_source(p, f)  # the check fetch just ran (content checks are cached)
        where = {"folder": str(p.resolve())} if p.is_dir() else {"bytes": p.stat().st_size, "md5": md5sum(p)}
        entries.append({"file": f.name, **where, "verified_by": v.how,
                        **({"content_check": v.content} if v.content is not None else {})})
    write_json(dest / "files.json", {"dataset": dataset, "files": entries})
    return paths


def prepare(dataset: str, cfg) -> Path:
    from .embedded import EMBEDDED

    if dataset in EMBEDDED:
        return EMBEDDED[dataset](cfg.prepared_dir)
    paths = download(dataset, cfg)
    raw = Path(cfg.raw_dir) / dataset
    if dataset == "notmnist":
        from .notmnist import prepare_notmnist

        n = cfg.notmnist
        return prepare_notmnist(RAW_FILES[dataset], raw, cfg.prepared_dir, n.train_size, n.val_size,
                                n.test_size, n.seed, paths={f.name: p for f, p in zip(RAW_FILES[dataset], paths)})
    from .idx_datasets import prepare_idx_dataset

    split = getattr(cfg, dataset)
    return prepare_idx_dataset(dataset, RAW_FILES[dataset], raw, cfg.prepared_dir, split.val_size, split.seed)


def main(argv: list[str] | None = None) -> int:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from .config import load_data_config
    from ..errors import ConfigError, one_line
    from .download import DownloadError
    from .idx import IdxError
    from .prepared import PreparedDataError, manifest_path

    parser = argparse.ArgumentParser(prog="python -m dropreg.data", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["download", "prepare"])
    parser.add_argument("dataset", choices=DATASETS)
    parser.add_argument("overrides", nargs="*", help="key=value overrides of conf/data.yaml")
    args = parser.parse_args(argv)
    try:
        cfg = load_data_config(args.overrides)
        if args.action == "download":
            for path in download(args.dataset, cfg):
                print(f"dropreg.data: {path}: verified")
        else:
            out = prepare(args.dataset, cfg)
            counts = json.loads(manifest_path(cfg.prepared_dir, args.dataset).read_text())["counts"]
            print(f"dropreg.data: {out}: {counts}")
    except (ConfigError, HydraException, OmegaConfBaseException) as exc:
        print(f"dropreg.data: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except (DownloadError, IdxError, PreparedDataError, DiskFull) as exc:
        print(f"dropreg.data: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

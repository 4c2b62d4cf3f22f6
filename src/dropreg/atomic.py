"""Write-to-temporary-then-rename, so a killed job never leaves a file that looks finished.

The temporary file sits beside the final one (`.<name>.<pid>.tmp`), never in $TMPDIR: a rename is
atomic only within one filesystem, and on clusters $TMPDIR is usually node-local while results live
on shared storage. With `durable=True` the data is flushed to disk before the rename, so even a
machine crash cannot leave a truncated file under the final name.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

TMP_SUFFIX = ".tmp"


def temporary_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.{os.getpid()}{TMP_SUFFIX}")


@contextmanager
def atomic_path(path: str | os.PathLike, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(final)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def stale_temporaries(directory: Path) -> list[Path]:
    """Temporary files a killed writer left in `directory`."""
    return [p for p in directory.glob(f".*{TMP_SUFFIX}") if p.is_file()]


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")

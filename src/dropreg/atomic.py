"""Write-to-temporary-then-rename, so a killed job never leaves a file that looks finished.

The temporary file sits beside the final one (`.<name>.<pid>.tmp`), never in $TMPDIR: a rename is
atomic only within one filesystem, and on clusters $TMPDIR is usually node-local while results live
on shared storage. With `durable=True` the data is flushed to disk before the rename, so even a
machine crash cannot leave a truncated file under the final name. A write that fails for want of
space raises DiskFull, whose message is the one line a user sees.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

TMP_SUFFIX = ".tmp"
# a failed write with less than this free beside it is taken for a full disk: torch's checkpoint
# writer reports ENOSPC as `RuntimeError: ... iostream error` / `unexpected pos`, without an errno
NEARLY_FULL_BYTES = 1 << 20


class DiskFull(OSError):
    """A write failed for want of space; the message names the file and what is left."""


def _free_bytes(directory: Path) -> int | None:
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def _out_of_space(exc: BaseException, directory: Path) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    free = _free_bytes(directory)
    return isinstance(exc, (OSError, RuntimeError)) and free is not None and free < NEARLY_FULL_BYTES


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
    except (OSError, RuntimeError) as exc:
        if isinstance(exc, DiskFull) or not _out_of_space(exc, final.parent):
            raise
        tmp.unlink(missing_ok=True)
        free = _free_bytes(final.parent)
        left = f"{free / 2**20:.1f} MiB left" if free is not None else "free space unknown"
        raise DiskFull(f"{final}: no space left on device ({left} on its filesystem); free some "
                       f"space and rerun: everything written before is intact and the run resumes") from exc
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

"""Advisory locks that die with their holder: one trainer per run dir, one Snakemake per preset.

A lock is an `flock` on a small file that records who holds it (`pid N on HOST since TIME`). The
kernel releases it when the holder's process ends, however it ends (kill -9 included), so a lock is
never stale; the file itself stays and means nothing on its own. The descriptor is not inherited by
child processes (Python opens files non-inheritable), so a job a holder starts does not keep it.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import os
import socket
import time
from pathlib import Path
from typing import Callable, Optional

POLL_SECONDS = 2.0


class Busy(RuntimeError):
    """The lock is held by another live process (and did not come free in the time allowed)."""


class FileLock:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: Optional[int] = None

    def holder(self, fd: int) -> str:
        return os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"

    def acquire(self, what: str, remedy: str, wait_s: float = 0.0,
                notify: Optional[Callable[[str], None]] = None) -> None:
        """Take the lock, or raise Busy in one line (`<what> <holder>; <remedy>`, e.g. `run: being
        trained by pid 7 on node1 since ...; wait for it to end or stop it`). With
        `wait_s` > 0, wait that long for the holder to end first, saying so once through `notify`."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = self.holder(fd)
                if time.monotonic() >= deadline:
                    os.close(fd)
                    waited = f" (waited {wait_s / 60:.0f} min)" if wait_s > 0 else ""
                    raise Busy(f"{what} {holder}{waited}; {remedy}") from None
                if not told and notify is not None:
                    notify(f"{what} {holder}; waiting up to {wait_s / 60:.0f} min for it to end")
                    told = True
                time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {_dt.datetime.now():%Y-%m-%d %H:%M:%S}\n"
                  .encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the flock
            self._fd = None


def hold_preset_lock(results: str, preset: str) -> FileLock:
    """Take the preset's lock (`results/<preset>/.snakemake.lock`) for the rest of this Snakemake
    process (called from the Snakefile's `onstart`, so a dry run or "nothing to be done" never takes
    it), or stop this invocation in one line."""
    import sys

    lock = FileLock(Path(results) / ".snakemake.lock")
    try:
        lock.acquire(f"preset {preset}: {results}/ is being produced by the snakemake of",
                     "let it finish (its packs and results are safe) or stop it, then rerun")
    except Busy as exc:
        print(f"dropreg: error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    return lock

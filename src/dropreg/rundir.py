"""A run directory: one run's files, who may write them, and what the files already there mean.

    <run dir>/config.yaml    the resolved config
              metrics.csv    one row per evaluation
              last.ckpt      the run's state at its latest evaluation (and its summary once it ended)
              summary.json   written when the run ended (completed, failed_to_learn or diverged)
              .lock          held by the one process training the run
              replaced/<time>/  earlier runs of another config that this dir held, kept

What an existing run dir means when a run is started in it:
- its checkpoint or summary is of the same run (same identity, see `config.run_identity`, and the
  same prepared data): an ended run is not trained again (its summary.json is restored from the
  checkpoint if missing); an unfinished one resumes from its checkpoint;
- it holds a run of another config (an edited preset, a changed budget): that run is moved into
  replaced/<time>/ (with its summary), reported in one line, and the new run starts. An edit is
  never a dead end and never loses a result;
- a checkpoint or summary that cannot be read is reported in one line, set aside under a new name
  (kept for inspection), and the run continues from what is still good.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any, Callable, Optional

from .atomic import atomic_path, stale_temporaries, write_json, write_text
from .config import first_difference, run_identity

CONFIG_FILE, METRICS_FILE, CHECKPOINT_FILE, SUMMARY_FILE = "config.yaml", "metrics.csv", "last.ckpt", "summary.json"
LOCK_FILE, REPLACED_DIR = ".lock", "replaced"
CHECKPOINT_FORMAT = 1
STATUSES = ("completed", "failed_to_learn", "diverged")


class RunDirBusy(RuntimeError):
    """Another live process holds the run dir's lock."""


class RunFileError(ValueError):
    """A run file that cannot be used (message: the file, what is wrong, what to do)."""


def _now() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S")


# ----------------------------------------------------------------------------- reading run files
def load_checkpoint(path: Path) -> dict[str, Any]:
    """A run checkpoint; RunFileError if it is unreadable or not one of ours."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, empty, random bytes, not a zip: torch raises many kinds
        raise RunFileError(f"{path}: unreadable checkpoint ({exc.__class__.__name__}: "
                           f"{' '.join(str(exc).split())[:80]})") from exc
    run = ckpt.get("dropreg") if isinstance(ckpt, dict) else None
    if not isinstance(run, dict) or run.get("format") != CHECKPOINT_FORMAT or not isinstance(run.get("config"), dict) \
            or not isinstance(run.get("update"), int) or not isinstance(ckpt.get("state_dict"), dict):
        raise RunFileError(f"{path}: not a dropreg run checkpoint (format {CHECKPOINT_FORMAT})")
    return ckpt


_SUMMARY_REMEDY = "delete it and rerun (the pipeline restores an ended run's summary from its checkpoint)"


def load_summary(path: Path) -> dict[str, Any]:
    """A run summary; RunFileError naming the file if it is unreadable or incomplete."""
    try:
        summary = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunFileError(f"{path}: not a readable run summary ({exc.__class__.__name__}); {_SUMMARY_REMEDY}") from exc
    if not isinstance(summary, dict):
        raise RunFileError(f"{path}: a run summary is a JSON object, this is a {type(summary).__name__}; "
                           f"{_SUMMARY_REMEDY}")
    missing = [k for k in ("run_id", "status", "test_error", "updates", "config") if k not in summary]
    if missing:
        raise RunFileError(f"{path}: not a complete run summary (lacks {', '.join(missing)}); {_SUMMARY_REMEDY}")
    if summary["status"] not in STATUSES or not isinstance(summary["config"], dict):
        raise RunFileError(f"{path}: status {summary['status']!r} or config is not what a run summary holds; "
                           f"{_SUMMARY_REMEDY}")
    return summary


def _written_by_another(summary: dict[str, Any], run_id: str) -> Optional[str]:
    if summary["run_id"] != run_id:
        return f"written by run {summary['run_id']!r}, not {run_id!r} (copied from another run dir?)"
    return None


def check_summary_belongs(path: Path, summary: dict[str, Any], config: Optional[dict] = None) -> None:
    """A summary must be its run dir's own: its run id is the dir's name, and (when given) its config
    is the run's. A summary copied from another run dir is refused."""
    foreign = _written_by_another(summary, Path(path).parent.name)
    if foreign:
        raise RunFileError(f"{path}: {foreign}; delete it and rerun")
    if config is not None:
        diff = first_difference(run_identity(summary["config"]), run_identity(config))
        if diff:
            raise RunFileError(f"{path}: written for another config ({diff}); delete it and rerun")


# ----------------------------------------------------------------------------- the directory
class RunDir:
    """One run's directory; `lock()` ... `unlock()` around everything that reads or writes it."""

    def __init__(self, path: str | Path, config: dict[str, Any], dataset_md5: str,
                 notify: Callable[[str], None]) -> None:
        self.path, self.config, self.dataset_md5, self.notify = Path(path), config, dataset_md5, notify
        self._lock_fd: Optional[int] = None

    @property
    def run_id(self) -> str:
        return self.path.name

    # ------------------------------------------------------------------ one trainer at a time
    def lock(self) -> None:
        """Take the run dir's lock (an flock that dies with its holder), or fail in one line."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunDirBusy(f"{self.path}: being trained by {holder}; wait for it to end or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {_dt.datetime.now():%Y-%m-%d %H:%M:%S}\n"
                  .encode(), 0)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    # ------------------------------------------------------------------ what is there
    def inspect(self) -> tuple[str, Optional[dict[str, Any]]]:
        """("finished", summary) | ("resume", checkpoint) | ("fresh", None), after setting aside
        whatever cannot be used (see the module docstring). Call with the lock held."""
        for tmp in stale_temporaries(self.path):  # left by a killed writer
            tmp.unlink(missing_ok=True)
        ckpt = self._read(CHECKPOINT_FILE, load_checkpoint)
        summary = self._read(SUMMARY_FILE, load_summary)
        foreign = _written_by_another(summary, self.run_id) if summary is not None else None
        if foreign:
            self._set_aside(SUMMARY_FILE, foreign)
            summary = None
        if ckpt is not None:
            stored, stored_md5 = ckpt["dropreg"]["config"], ckpt["dropreg"].get("dataset_md5")
        elif summary is not None:
            stored, stored_md5 = summary["config"], summary.get("dataset_md5")
        else:
            stored, stored_md5 = self._stored_config(), None
        if stored is not None:
            reason = self._difference(stored, stored_md5)
            if reason:
                self._replace(reason, ckpt)
                return "fresh", None
        if ckpt is not None:
            final = ckpt["dropreg"].get("summary")
            if final:
                if summary != final:
                    write_json(self.path / SUMMARY_FILE, final)
                return "finished", final
            if summary is not None:  # an older run's: the checkpoint says this one has not ended
                self._set_aside(SUMMARY_FILE, "older than the run's checkpoint, which has not ended")
            return "resume", ckpt
        if summary is not None:
            return "finished", summary
        return "fresh", None

    def _read(self, name: str, loader) -> Optional[dict[str, Any]]:
        path = self.path / name
        if not path.exists():
            return None
        try:
            if path.is_dir():
                raise RunFileError(f"{path}: a directory where a file belongs")
            return loader(path)
        except RunFileError as exc:
            self._set_aside(name, str(exc).split(": ", 1)[-1].split(";")[0])
            return None

    def _stored_config(self) -> Optional[dict[str, Any]]:
        """The config of a run killed before its first checkpoint (config.yaml), if any."""
        import yaml

        try:
            stored = yaml.safe_load((self.path / CONFIG_FILE).read_text())
        except (OSError, yaml.YAMLError):
            return None
        return stored if isinstance(stored, dict) else None

    def _difference(self, stored: dict, stored_md5: Optional[str]) -> Optional[str]:
        diff = first_difference(run_identity(stored), run_identity(self.config))
        if diff:
            return diff
        if stored_md5 is not None and stored_md5 != self.dataset_md5:
            return f"prepared {self.config['dataset']['name']} changed: npz md5 {stored_md5} there, {self.dataset_md5} now"
        return None

    def _set_aside(self, name: str, reason: str) -> None:
        src = self.path / name
        dst = self.path / f"{name}.unusable-{_now()}"
        os.replace(src, dst)
        self.notify(f"{src}: {reason}; set aside as {dst.name}, the run goes on without it")

    def _replace(self, reason: str, ckpt: Optional[dict[str, Any]]) -> None:
        """Move the other run this dir holds into replaced/<time>/, with its summary."""
        dest = self.path / REPLACED_DIR / _now()
        n = 1
        while dest.exists():
            n += 1
            dest = dest.with_name(f"{_now()}-{n}")
        dest.mkdir(parents=True)
        for entry in self.path.iterdir():
            if entry.name not in (LOCK_FILE, REPLACED_DIR):
                shutil.move(str(entry), str(dest / entry.name))
        final = (ckpt or {}).get("dropreg", {}).get("summary")
        if final and not (dest / SUMMARY_FILE).exists():  # Snakemake deletes a rerun job's outputs first
            write_json(dest / SUMMARY_FILE, final)
        write_text(dest / "REPLACED.txt", f"replaced on {_dt.datetime.now():%Y-%m-%d %H:%M:%S} by a run of another "
                                          f"config: {reason}\n")
        self.notify(f"{self.path}: held a run of another config ({reason}); kept it in "
                    f"{dest.relative_to(self.path.parent)}, training the new one")

    # ------------------------------------------------------------------ writing
    def write_config(self) -> None:
        import yaml

        write_text(self.path / CONFIG_FILE, yaml.safe_dump(self.config, sort_keys=False))

    def write_metrics(self, rows: list[dict[str, float]]) -> None:
        import pandas as pd

        with atomic_path(self.path / METRICS_FILE) as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)

    def write_checkpoint(self, ckpt: dict[str, Any]) -> None:
        import torch

        with atomic_path(self.path / CHECKPOINT_FILE, durable=True) as tmp:
            torch.save(ckpt, tmp)

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.path / SUMMARY_FILE, summary)

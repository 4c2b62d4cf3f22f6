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
- a checkpoint, summary or metrics.csv that cannot be used is reported in one line, set aside under
  a new name (kept for inspection), and the run continues from what is still good. Everything a
  finished run is believed by is checked when read: the checkpoint's tensors against its config's
  net and its update against the budget, every summary field's type and range, metrics.csv against
  the checkpoint's record (rewritten from it if they differ). A summary without a usable checkpoint
  has no model behind it: it is set aside and the run trained again.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Optional

from .atomic import atomic_path, stale_temporaries, write_json, write_text
from .identity import first_difference, run_identity
from .locks import FileLock
from .runfiles import (CHECKPOINT_FILE, CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, Checkpoint, RunFileError,
                       load_summary)

LOCK_FILE, REPLACED_DIR = ".lock", "replaced"


def _now() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S")


# ----------------------------------------------------------------------------- reading run files
def load_metrics(run_dir: str | Path, notify: Callable[[str], None]):
    """A run's metrics as a DataFrame: its metrics.csv when that is its checkpoint's record, else the
    record itself, said in one line through `notify` (the next training run rewrites the file)."""
    import pandas as pd

    path, ckpt = Path(run_dir) / METRICS_FILE, Path(run_dir) / CHECKPOINT_FILE
    if not ckpt.exists():  # nothing to check it against
        try:
            return pd.read_csv(path)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise RunFileError(f"{path}: unreadable ({exc.__class__.__name__}) and no last.ckpt to restore it "
                               "from; delete the run dir and rerun") from exc
    rows = Checkpoint.load(ckpt).rows
    problem = metrics_problem(path, rows) if path.exists() else "missing"
    if problem:
        notify(f"{path}: {problem}; using the record in last.ckpt instead (training rewrites the file)")
        return pd.DataFrame(rows)
    return pd.read_csv(path)


def metrics_problem(path: Path, rows: list[dict[str, Any]]) -> Optional[str]:
    """What makes metrics.csv not the run's own record (`rows`, from its checkpoint): unreadable,
    other columns, another number of rows, another last update, other values."""
    import numpy as np
    import pandas as pd

    try:
        found = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # pandas' parser and empty-file errors are ValueErrors
        return f"unreadable ({exc.__class__.__name__})"
    expected = pd.DataFrame(rows)
    if list(found.columns) != list(expected.columns):
        return f"columns {list(found.columns)[:4]}..., the run's record has {list(expected.columns)[:4]}..."
    if len(found) != len(expected):
        return f"{len(found)} rows, the run's record has {len(expected)} (cut short?)"
    try:
        same = np.allclose(found.to_numpy(float), expected.to_numpy(float), rtol=1e-9, atol=0, equal_nan=True)
    except (TypeError, ValueError):
        same = False
    if not same:
        return "values differ from the run's record (edited or damaged)"
    return None


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


def set_aside(path: Path) -> Path:
    """Rename an unusable file to `<name>.unusable-<time>` beside it (kept for inspection, and out of
    the way of whatever writes it again); the new path."""
    dst = path.with_name(f"{path.name}.unusable-{_now()}")
    n = 1
    while dst.exists():
        n += 1
        dst = path.with_name(f"{path.name}.unusable-{_now()}-{n}")
    os.replace(path, dst)
    return dst


# ----------------------------------------------------------------------------- the directory
class RunDir:
    """One run's directory; `lock()` ... `unlock()` around everything that reads or writes it."""

    def __init__(self, path: str | Path, config: dict[str, Any], dataset_md5: str,
                 notify: Callable[[str], None]) -> None:
        self.path, self.config, self.dataset_md5, self.notify = Path(path), config, dataset_md5, notify
        self._lock = FileLock(self.path / LOCK_FILE)

    @property
    def run_id(self) -> str:
        return self.path.name

    # ------------------------------------------------------------------ one trainer at a time
    def lock(self, wait_s: float = 0.0) -> None:
        """Take the run dir's lock (it dies with its holder). Held by another live trainer: wait up
        to `wait_s` for it to end (an orphaned pack of an earlier Snakemake still training), then
        Busy in one line."""
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock.acquire(f"{self.path}: being trained by", "wait for it to end or stop it", wait_s, self.notify)

    def unlock(self) -> None:
        self._lock.release()

    # ------------------------------------------------------------------ what is there
    def inspect(self) -> tuple[str, Any]:
        """("finished", summary) | ("resume", Checkpoint) | ("fresh", None), after setting aside
        whatever cannot be used (see the module docstring). Call with the lock held."""
        for tmp in stale_temporaries(self.path):  # left by a killed writer
            tmp.unlink(missing_ok=True)
        ckpt, ckpt_problem = self._read(CHECKPOINT_FILE, Checkpoint.load)
        summary, summary_problem = self._read(SUMMARY_FILE, load_summary)
        if ckpt_problem:
            self._set_aside(CHECKPOINT_FILE, ckpt_problem, with_results=summary is not None)
            summary = None
        elif summary_problem:
            self._set_aside(SUMMARY_FILE, summary_problem)
        foreign = _written_by_another(summary, self.run_id) if summary is not None else None
        if foreign:
            self._set_aside(SUMMARY_FILE, foreign)
            summary = None
        if ckpt is not None:
            stored, stored_md5 = ckpt.config, ckpt.dataset_md5
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
            final = ckpt.summary
            if final:
                # (an unfinished run's metrics.csv may be one row ahead of its checkpoint after a kill
                # between the two writes; training rewrites it from the checkpoint at its next evaluation)
                self._check_metrics(ckpt.rows)
                if summary != final:
                    write_json(self.path / SUMMARY_FILE, final)
                return "finished", final
            if summary is not None:  # an older run's: the checkpoint says this one has not ended
                self._set_aside(SUMMARY_FILE, "older than the run's checkpoint, which has not ended")
            return "resume", ckpt
        if summary is not None and not ckpt_problem:  # ended, but no model to evaluate or draw: not finished
            self._set_aside(SUMMARY_FILE, "no last.ckpt beside it, so the run has no model", with_results=True)
        return "fresh", None

    def _check_metrics(self, rows: list[dict[str, Any]]) -> None:
        """metrics.csv must be the checkpoint's record; if it is not, it is set aside and rewritten."""
        path = self.path / METRICS_FILE
        problem = metrics_problem(path, rows) if path.exists() else None
        if problem:
            self._set_aside(METRICS_FILE, f"{problem}; rewritten from last.ckpt")
        if rows and (problem or not path.exists()):
            self.write_metrics(rows)

    def _read(self, name: str, loader) -> tuple[Any, Optional[str]]:
        """(content, None), (None, what is wrong with it) or (None, None) when there is no such file."""
        path = self.path / name
        if not path.exists():
            return None, None
        try:
            if path.is_dir():
                raise RunFileError(f"{path}: a directory where a file belongs")
            return loader(path), None
        except RunFileError as exc:
            return None, str(exc).split(": ", 1)[-1].split("; delete it")[0]

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

    def _set_aside(self, name: str, reason: str, with_results: bool = False) -> None:
        """Set `name` aside in one line; `with_results`: the run's summary and metrics too (a model
        that is gone takes what was measured on it along), and the run is trained again."""
        src = self.path / name
        dst = set_aside(src)
        if not with_results:
            self.notify(f"{src}: {reason}; set aside as {dst.name}, the run goes on without it")
            return
        for other in (SUMMARY_FILE, METRICS_FILE):
            if other != name and (self.path / other).exists():
                set_aside(self.path / other)
        self.notify(f"{src}: {reason}; set aside as {dst.name}, with the summary and metrics measured on its "
                    "model: the run is trained again")

    def _replace(self, reason: str, ckpt: Optional[Checkpoint]) -> None:
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
        final = ckpt.summary if ckpt is not None else None
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

    def write_checkpoint(self, ckpt: Checkpoint) -> None:
        ckpt.save(self.path / CHECKPOINT_FILE)

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.path / SUMMARY_FILE, summary)

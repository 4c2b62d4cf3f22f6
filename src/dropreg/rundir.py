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
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Optional

from .atomic import atomic_path, stale_temporaries, write_json, write_text
from .config import first_difference, run_identity
from .status import STATUSES
from .locks import FileLock

CONFIG_FILE, METRICS_FILE, CHECKPOINT_FILE, SUMMARY_FILE = "config.yaml", "metrics.csv", "last.ckpt", "summary.json"
LOCK_FILE, REPLACED_DIR = ".lock", "replaced"
CHECKPOINT_FORMAT = 1


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
    problem = _checkpoint_problem(ckpt)
    if problem:
        raise RunFileError(f"{path}: {problem}")
    return ckpt


def expected_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The parameters a run of `config` has, as a pack of one (`net.layers.<i>.weight|bias`)."""
    widths = [config["dataset"]["input_dim"], *config["model"]["hidden"], config["dataset"]["num_classes"]]
    shapes: dict[str, tuple[int, ...]] = {}
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        shapes[f"net.layers.{i}.weight"], shapes[f"net.layers.{i}.bias"] = (1, a, b), (1, b)
    return shapes


def _checkpoint_problem(ckpt: dict[str, Any]) -> Optional[str]:
    """What makes a checkpoint unusable for its own config: tensors of other names or shapes than
    its net has (weights and momentum), an update outside its budget, rows that do not end there."""
    run = ckpt["dropreg"]
    config = run["config"]
    try:
        shapes, budget = expected_shapes(config), int(config["optim"]["max_updates"])
    except (KeyError, TypeError, ValueError):
        return "its config lacks the model, dataset or budget a run has"
    for what, tensors in (("weights", ckpt["state_dict"]), ("momentum", run.get("momentum") or {})):
        if not isinstance(tensors, dict):
            return f"its {what} are not a mapping of tensors"
        found = {k: tuple(getattr(v, "shape", ())) for k, v in tensors.items()}
        if what == "weights" and set(found) != set(shapes):
            return f"its {what} are {sorted(found)}, a {len(shapes) // 2}-layer net has {sorted(shapes)}"
        wrong = [f"{k} {found[k]}" for k in found if k in shapes and found[k] != shapes[k]]
        if wrong or set(found) - set(shapes):
            first = wrong[0] if wrong else sorted(set(found) - set(shapes))[0]
            return f"its {what} do not fit the config's net ({first}, expected {shapes.get(first.split()[0], 'none')})"
    if not 0 <= run["update"] <= budget:
        return f"update {run['update']} is outside the run's budget 0-{budget}"
    rows = run.get("rows")
    if not isinstance(rows, list) or (rows and (not isinstance(rows[-1], dict) or rows[-1].get("update") != run["update"])):
        return f"its metrics rows do not end at its update {run['update']}"
    return None


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
    problem = _summary_problem(summary)
    if problem:
        raise RunFileError(f"{path}: {problem}; {_SUMMARY_REMEDY}")
    return summary


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


# every field a summary's readers compute with: (type check, allowed values in words); None is allowed
# for the optional ones (no validation split, no evaluation yet, a run that did not diverge)
_PERCENT = (lambda v: _is_number(v) and 0 <= v <= 100, "a number 0-100")
_SUMMARY_FIELDS: dict[str, tuple[Callable[[Any], bool], str, bool]] = {
    "run_id": (lambda v: isinstance(v, str) and bool(v), "a run id", False),
    "status": (lambda v: v in STATUSES, f"one of {', '.join(STATUSES)}", False),
    "config": (lambda v: isinstance(v, dict), "a config mapping", False),
    "updates": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an integer >= 0", False),
    "test_error": (*_PERCENT, False),
    "best_val_error": (*_PERCENT, True),
    "final_val_error": (*_PERCENT, True),
    "final_train_error": (*_PERCENT, True),
    "largest_val_rise": (*_PERCENT, True),
    "best_val_update": (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0", True),
    "diverged_at_update": (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0", True),
    "wall_seconds": (lambda v: _is_number(v) and v >= 0, "a number >= 0", True),
    "pack_size": (lambda v: isinstance(v, int) and v >= 1, "an integer >= 1", True),
    "regularizer_activity": (lambda v: isinstance(v, dict) and all(_is_number(x) or x is None for x in v.values()),
                             "a mapping of numbers", True),
}


def _summary_problem(summary: dict[str, Any]) -> Optional[str]:
    for key, (ok, allowed, optional) in _SUMMARY_FIELDS.items():
        if key not in summary or (optional and summary[key] is None):
            continue
        if not ok(summary[key]):
            return f"{key} is {summary[key]!r}, not {allowed}"
    if summary["status"] == "diverged" and summary.get("diverged_at_update") is None:
        return "status diverged without diverged_at_update"
    return None


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
    rows = load_checkpoint(ckpt)["dropreg"]["rows"]
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
    def inspect(self) -> tuple[str, Optional[dict[str, Any]]]:
        """("finished", summary) | ("resume", checkpoint) | ("fresh", None), after setting aside
        whatever cannot be used (see the module docstring). Call with the lock held."""
        for tmp in stale_temporaries(self.path):  # left by a killed writer
            tmp.unlink(missing_ok=True)
        ckpt, ckpt_problem = self._read(CHECKPOINT_FILE, load_checkpoint)
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
                # (an unfinished run's metrics.csv may be one row ahead of its checkpoint after a kill
                # between the two writes; training rewrites it from the checkpoint at its next evaluation)
                self._check_metrics(ckpt["dropreg"]["rows"])
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

    def _read(self, name: str, loader) -> tuple[Optional[dict[str, Any]], Optional[str]]:
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

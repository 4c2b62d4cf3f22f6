"""The files a run leaves, as types: its checkpoint and its summary, read strictly and written whole.

`last.ckpt` is a torch file that Lightning would also recognise (`state_dict`, `hyper_parameters`);
our own record sits under its `dropreg` key. `Checkpoint` is the one place that knows that layout:
every reader (the trainer resuming, the run dir's checks, evaluate, the figures) gets a `Checkpoint`
whose fields are checked against its own config's net and budget. `summary.json` is the run's result
once it ended; `SUMMARY_FIELDS` is what its readers may rely on, each field with its allowed values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from .status import STATUSES, Status

CONFIG_FILE, METRICS_FILE, CHECKPOINT_FILE, SUMMARY_FILE = "config.yaml", "metrics.csv", "last.ckpt", "summary.json"
CHECKPOINT_FORMAT = 1


class RunFileError(ValueError):
    """A run file that cannot be used (message: the file, what is wrong, what to do)."""


@dataclass
class Checkpoint:
    """A run's state at an evaluation: weights and momentum (as a pack of one), the metrics rows so
    far, its wall time, and its summary once it ended (then it is the run's final record)."""

    run_id: str
    config: dict[str, Any]
    update: int
    state_dict: dict[str, Any]
    momentum: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    wall_seconds: float = 0.0
    dataset_md5: Optional[str] = None
    summary: Optional[dict[str, Any]] = None

    def save(self, path: Path) -> None:
        import pytorch_lightning as pl
        import torch

        from .atomic import atomic_path

        with atomic_path(path, durable=True) as tmp:
            torch.save({"pytorch-lightning_version": pl.__version__, "state_dict": self.state_dict,
                        "hyper_parameters": {"configs": [self.config]},
                        "dropreg": {"format": CHECKPOINT_FORMAT, "run_id": self.run_id, "config": self.config,
                                    "update": self.update, "momentum": self.momentum, "rows": self.rows,
                                    "wall_seconds": self.wall_seconds, "dataset_md5": self.dataset_md5,
                                    "summary": self.summary}}, tmp)

    @classmethod
    def load(cls, path: Path) -> "Checkpoint":
        """RunFileError if it is unreadable, not one of ours, or does not fit its own config."""
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
        return cls(run_id=run.get("run_id") or Path(path).parent.name, config=run["config"], update=run["update"],
                   state_dict=ckpt["state_dict"], momentum=run.get("momentum") or {}, rows=run["rows"],
                   wall_seconds=float(run.get("wall_seconds") or 0.0), dataset_md5=run.get("dataset_md5"),
                   summary=run.get("summary"))


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
    problem = summary_problem(summary)
    if problem:
        raise RunFileError(f"{path}: {problem}; {_SUMMARY_REMEDY}")
    return summary


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


# every field a summary's readers compute with: (type check, allowed values in words); None is allowed
# for the optional ones (no validation split, no evaluation yet, a run that did not diverge)
_PERCENT = (lambda v: _is_number(v) and 0 <= v <= 100, "a number 0-100")
SUMMARY_FIELDS: dict[str, tuple[Callable[[Any], bool], str, bool]] = {
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


def summary_problem(summary: dict[str, Any]) -> Optional[str]:
    for key, (ok, allowed, optional) in SUMMARY_FIELDS.items():
        if key not in summary or (optional and summary[key] is None):
            continue
        if not ok(summary[key]):
            return f"{key} is {summary[key]!r}, not {allowed}"
    if summary["status"] == Status.DIVERGED and summary.get("diverged_at_update") is None:
        return "status diverged without diverged_at_update"
    return None

"""Callback that turns each evaluation of a pack into every running member's files and log lines.

Per member and evaluation: a `metrics.csv` row, a progress line (update, data loss, errors, updates
per second, ETA), the row for its Lightning logger if one is configured, and a `last.ckpt` holding
the member's state, its rows and its wall time, so a resumed run rewrites `metrics.csv` exactly as
an uninterrupted run. A member that diverged or reached its budget gets its `summary.json` (also
stored in the checkpoint, from which a deleted summary is restored); the model has retired it.
"""

from __future__ import annotations

import datetime as _dt
import logging
import platform
import time
from importlib import metadata
from typing import Any, Optional

import pytorch_lightning as pl

from .schema import TrainConfig
from .model import RETIRED, Evaluation
from .module import PackedClassifier
from .rundir import RunDir
from .runfiles import Checkpoint
from .status import Status

log = logging.getLogger("dropreg.train")
_VERSIONED = ("dropreg", "torch", "pytorch-lightning", "hydra-core", "numpy")
# a run whose error never drops below this fraction of chance level has learned nothing
CHANCE_FRACTION = 0.9


def versions() -> dict[str, str]:
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:  # e.g. run from a source tree that is not installed
            return "not installed"

    return {"python": platform.python_version(), **{n: version(n) for n in _VERSIONED}}


def device_description(trainer: pl.Trainer) -> str:
    import torch

    device = trainer.strategy.root_device
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def learned_status(rows: list[dict[str, float]], num_classes: int) -> Status:
    """`failed_to_learn` when no evaluation of the run ever got below 90 % of chance-level error
    (81 % for 10 classes), else `completed`."""
    chance = 100.0 * (1.0 - 1.0 / num_classes)
    errors = [r[k] for r in rows for k in ("val/error", "test/error") if k in r]
    return Status.FAILED_TO_LEARN if errors and min(errors) >= CHANCE_FRACTION * chance else Status.COMPLETED


def largest_rise(errors: list[float]) -> Optional[float]:
    """The largest rise of an error above its lowest earlier value, in percentage points (0 for a
    curve that never rises; None without two evaluations): a spike that the final value may hide."""
    if len(errors) < 2:
        return None
    rise, low = 0.0, errors[0]
    for e in errors[1:]:
        rise, low = max(rise, e - low), min(low, e)
    return round(rise, 4)


def _duration(seconds: float) -> str:
    return str(_dt.timedelta(seconds=round(seconds)))


class PackRecorder(pl.Callback):
    def __init__(self, dirs: list[RunDir], settings: list[TrainConfig], resumed: dict[int, dict[str, Any]],
                 dataset_md5: str) -> None:
        """`dirs[k]`, `settings[k]`: slot k's run; `resumed[k]`: its checkpoint when it resumes."""
        self.dirs, self.settings, self.dataset_md5 = dirs, settings, dataset_md5
        self.rows = [list(resumed[k].rows) if k in resumed else [] for k in range(len(dirs))]
        self.wall = [resumed[k].wall_seconds if k in resumed else 0.0 for k in range(len(dirs))]
        self.summaries: dict[int, dict[str, Any]] = {}
        self.loggers: list[Optional[Any]] = [None] * len(dirs)
        self._last = time.perf_counter()
        self._last_update = 0

    # ------------------------------------------------------------------ Lightning hooks
    def on_fit_start(self, trainer: pl.Trainer, module: PackedClassifier) -> None:
        self._last, self._last_update = time.perf_counter(), module.model.update
        for k, s in enumerate(self.settings):
            if s.logger._target_:
                from hydra.utils import get_class

                self.loggers[k] = get_class(s.logger._target_)(save_dir=str(self.dirs[k].path), **s.logger.kwargs)
                self.loggers[k].log_hyperparams(self.dirs[k].config)

    def on_validation_end(self, trainer: pl.Trainer, module: PackedClassifier) -> None:
        evaluation, module.evaluation = module.evaluation, None
        if trainer.sanity_checking or evaluation is None:
            return
        now = time.perf_counter()
        seconds = now - self._last
        rate = (evaluation.update - self._last_update) / seconds if seconds > 0 else float("nan")
        self._last, self._last_update = now, evaluation.update
        for k in evaluation.metrics:
            self._record(k, evaluation, seconds, rate, module, trainer)
        if all(p == RETIRED for p in module.model.phase):
            trainer.should_stop = True

    def on_fit_end(self, trainer: pl.Trainer, module: PackedClassifier) -> None:
        for lg in self.loggers:
            if lg is not None:
                lg.finalize("success")

    # ------------------------------------------------------------------ one member's evaluation
    def _record(self, k: int, evaluation: Evaluation, seconds: float, rate: float, module: PackedClassifier,
                trainer: pl.Trainer) -> None:
        run, s, update, metrics = self.dirs[k], self.settings[k], evaluation.update, evaluation.metrics[k]
        self.wall[k] += seconds
        row = {"update": update, **metrics}
        self.rows[k] = [r for r in self.rows[k] if r["update"] != update] + [row]
        run.write_metrics(self.rows[k])
        status = None
        if k in evaluation.ended:
            diverged = evaluation.ended[k]
            status = Status.DIVERGED if diverged is not None else learned_status(self.rows[k], s.dataset.num_classes)
        summary = self._summary(k, status, evaluation.ended.get(k), module, trainer) if status else None
        state = evaluation.states[k]
        run.write_checkpoint(Checkpoint(run.run_id, run.config, update, state["state_dict"], state.get("momentum", {}),
                                        self.rows[k], self.wall[k], self.dataset_md5, summary))
        if summary is not None:
            run.write_summary(summary)
            self.summaries[k] = summary
        if self.loggers[k] is not None:
            self.loggers[k].log_metrics(metrics, step=update)
        self._progress(run, s, row, rate, status)

    def _summary(self, k: int, status: Status, diverged_at: Optional[int], module: PackedClassifier,
                 trainer: pl.Trainer) -> dict[str, Any]:
        rows, run = self.rows[k], self.dirs[k]
        val = [(r["val/error"], int(r["update"])) for r in rows if "val/error" in r]
        best_val = min(val) if val else (None, None)
        graph_used, graph_reason = module.step_fn.graph_status
        return {
            "run_id": run.run_id,
            "run_dir": str(run.path),
            "status": status.value,
            "diverged_at_update": diverged_at,
            "test_error": rows[-1]["test/error"],
            "best_val_error": best_val[0],
            "best_val_update": best_val[1],
            "final_val_error": val[-1][0] if val else None,
            "largest_val_rise": largest_rise([v for v, _ in val]),
            "final_train_error": rows[-1].get("train/error"),  # dropout active, averaged since the last row
            # whether each regularizer acted, at the last evaluation (model.PackModel._activity)
            "regularizer_activity": {key.removeprefix("reg/"): v for key, v in rows[-1].items() if key.startswith("reg/")},
            "updates": int(rows[-1]["update"]),
            "wall_seconds": round(self.wall[k], 3),  # the pack's time while this run was in it
            "pack_size": module.members,
            "device": device_description(trainer),
            "cuda_graph": graph_used,
            "cuda_graph_reason": graph_reason,
            "dataset_md5": self.dataset_md5,
            "versions": versions(),
            "config": run.config,
        }

    def _progress(self, run: RunDir, s: TrainConfig, row: dict[str, float], rate: float, status: Optional[Status]) -> None:
        total, update = s.optim.max_updates, int(row["update"])
        errors = "  ".join(f"{split} {row[f'{split}/error']:.2f}%" for split in ("train", "val", "test")
                           if f"{split}/error" in row)
        eta = _duration((total - update) / rate) if rate == rate and rate > 0 else "?"
        end = f"  -> {status}" if status else ""
        log.info(f"{run.path.parent.name}/{run.run_id}  update {update:,}/{total:,}  loss {row['train/loss']:.4f}  "
                 f"{errors}  {rate:,.0f} upd/s  ETA {eta}{end}")

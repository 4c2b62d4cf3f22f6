"""Callback that turns each evaluation into a `metrics.csv` row and a resumable `last.ckpt`.

The rows and the wall time so far travel inside the checkpoint, so a run resumed from `last.ckpt`
rewrites `metrics.csv` exactly as an uninterrupted run would have it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytorch_lightning as pl
from pytorch_lightning.trainer.states import TrainerFn

from .atomic import atomic_path

METRICS_FILE = "metrics.csv"
CHECKPOINT_FILE = "last.ckpt"


class RunRecorder(pl.Callback):
    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.rows: list[dict[str, float]] = []
        self.wall_before = 0.0  # seconds spent in earlier (interrupted) attempts of this run
        self.started = time.perf_counter()

    @property
    def last_update(self) -> int:
        return int(self.rows[-1]["update"]) if self.rows else -1

    def wall_seconds(self) -> float:
        return self.wall_before + time.perf_counter() - self.started

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "wall_seconds": self.wall_seconds()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows = list(state["rows"])
        self.wall_before = float(state["wall_seconds"])
        self.started = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        row = {"update": trainer.global_step, **pl_module.last_eval}
        self.rows = [r for r in self.rows if r["update"] != row["update"]] + [row]
        with atomic_path(self.run_dir / METRICS_FILE) as tmp:
            pd.DataFrame(self.rows).to_csv(tmp, index=False)
        if trainer.state.fn == TrainerFn.FITTING:
            # Lightning writes checkpoints through an fsspec transaction: temporary file, then rename
            trainer.save_checkpoint(self.run_dir / CHECKPOINT_FILE)

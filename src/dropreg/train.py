"""One training run: `python -m dropreg.train <Hydra overrides> hydra.run.dir=<run dir>`.

Writes into the run dir: `config.yaml` (resolved), `metrics.csv` (one row per evaluation),
`last.ckpt` (resumable; carries the config), and at the end `summary.json`. Started again in a run
dir holding `last.ckpt`, it resumes; in one holding `summary.json` of the same config, it does nothing.
A run whose loss becomes NaN/inf stops, is summarized as `diverged`, and exits 0 so a study goes on.
"""

from __future__ import annotations

import json
import logging
import platform
import sys
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Optional

from omegaconf import DictConfig, OmegaConf

from .atomic import write_json, write_text
from .config import ConfigError, compose, one_line, validate, without_hydra

SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.yaml"
_VERSIONED = ("dropreg", "torch", "pytorch-lightning", "torchmetrics", "hydra-core", "numpy")


class RunDirConflict(ConfigError):
    """The run dir already holds a run of a different config."""


def first_difference(a: Any, b: Any, prefix: str = "") -> Optional[str]:
    """Dotted key of the first difference between two nested dicts (None when equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            found = first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
            if found:
                return found
        return None
    return None if a == b else f"{prefix[:-1]}: {a!r} there, {b!r} now"


# settings that change how a run executes but not what it computes: free to differ on a resume
_OPERATIONAL = ("threads", "progress_bar")


def _results_relevant(config: dict) -> dict:
    return {**config, "trainer": {k: v for k, v in config["trainer"].items() if k not in _OPERATIONAL}}


def _check_same_run(run_dir: Path, stored: dict, config: dict, what: str) -> None:
    diff = first_difference(_results_relevant(stored), _results_relevant(config))
    if diff:
        raise RunDirConflict(f"{run_dir / what} belongs to another config ({diff}); "
                             "use another hydra.run.dir or delete that run dir")


def device_description(trainer) -> str:
    import torch

    device = trainer.strategy.root_device
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def versions() -> dict[str, str]:
    return {"python": platform.python_version(), **{n: metadata.version(n) for n in _VERSIONED}}


def _quiet_lightning() -> None:
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning 2.6 on torch 2.13
    # inside SLURM jobs we run one process on purpose (see the LightningEnvironment plugin below)
    warnings.filterwarnings("ignore", message="The `srun` command is available")
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


def train(cfg: DictConfig, run_dir: str | Path, callbacks: Iterable = ()) -> dict[str, Any]:
    """Train (or resume, or skip if finished) the run `cfg` in `run_dir`; return its summary."""
    settings = validate(cfg)
    config = OmegaConf.to_container(without_hydra(cfg))
    run_dir = Path(run_dir)
    summary_path, ckpt_path = run_dir / SUMMARY_FILE, run_dir / "last.ckpt"
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        _check_same_run(run_dir, summary["config"], config, SUMMARY_FILE)
        print(f"dropreg.train: {summary_path} exists ({summary['status']}); nothing to do", file=sys.stderr)
        return summary

    import pytorch_lightning as pl
    import torch
    from lightning_fabric.plugins.environments import LightningEnvironment

    from .data.datamodule import PreparedDataModule
    from .module import RegularizedClassifier
    from .recorder import RunRecorder

    resume = ckpt_path.is_file()
    if resume:
        stored = torch.load(ckpt_path, map_location="cpu", weights_only=False)["hyper_parameters"]["config"]
        _check_same_run(run_dir, stored, config, ckpt_path.name)
    write_text(run_dir / CONFIG_FILE, OmegaConf.to_yaml(config))

    _quiet_lightning()
    if settings.trainer.threads:
        torch.set_num_threads(settings.trainer.threads)
    pl.seed_everything(settings.seed, verbose=False)
    datamodule = PreparedDataModule(settings.dataset, settings.optim.batch_size,
                                    settings.trainer.eval_batch_size, settings.seed)
    module = RegularizedClassifier(config)
    recorder = RunRecorder(run_dir)
    trainer = pl.Trainer(
        accelerator=settings.trainer.accelerator, devices=1, precision=settings.trainer.precision,
        max_steps=settings.optim.max_updates, val_check_interval=settings.trainer.eval_every,
        check_val_every_n_epoch=None, num_sanity_val_steps=0, deterministic=settings.trainer.deterministic,
        logger=False, enable_checkpointing=False, enable_model_summary=False,
        enable_progress_bar=settings.trainer.progress_bar, default_root_dir=run_dir,
        callbacks=[recorder, *callbacks],
        # One process, one device, also inside a SLURM job: Snakemake submits, retries and resumes;
        # Lightning's SLURM integration (auto-requeue, rank detection) stays out of the way.
        plugins=[LightningEnvironment()],
    )
    print(f"dropreg.train: {'resuming' if resume else 'starting'} {run_dir} "
          f"({settings.regularizer.name}, {settings.model.name}, {settings.dataset.name}, "
          f"seed {settings.seed}, {settings.optim.max_updates} updates)", file=sys.stderr)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path if resume else None)
    if module.diverged_at is None and recorder.last_update != trainer.global_step:
        trainer.validate(module, datamodule=datamodule, verbose=False)  # the final model's errors

    rows = recorder.rows
    val = [(r["val/error"], int(r["update"])) for r in rows if "val/error" in r]
    best_val = min(val) if val else (None, None)
    summary = {
        "status": "diverged" if module.diverged_at is not None else "completed",
        "diverged_at_update": module.diverged_at,
        "test_error": rows[-1]["test/error"],
        "best_val_error": best_val[0],
        "best_val_update": best_val[1],
        "final_val_error": val[-1][0] if val else None,
        "final_train_error": rows[-1].get("train/error"),  # dropout active, averaged since the last row
        "updates": trainer.global_step,
        "wall_seconds": round(recorder.wall_seconds(), 3),
        "device": device_description(trainer),
        "versions": versions(),
        "config": config,
    }
    write_json(summary_path, summary)
    return summary


def cli(argv: Optional[list[str]] = None) -> int:
    """Compose and validate the config (one-line error, exit 2, before any training), then train."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from .data.prepared import PreparedDataError

    argv = sys.argv[1:] if argv is None else argv
    try:
        cfg = compose(argv)
        validate(cfg)
        run_dir = Path(cfg.hydra.run.dir)
        summary = train(cfg, run_dir)
    except (ConfigError, HydraException, OmegaConfBaseException, PreparedDataError) as exc:
        print(f"dropreg.train: error: {one_line(exc)}", file=sys.stderr)
        return 2
    status = summary["status"]
    if status == "diverged":
        print(f"dropreg.train: {run_dir}: diverged at update {summary['diverged_at_update']}")
    else:
        print(f"dropreg.train: {run_dir}: test error {summary['test_error']:.2f}% after "
              f"{summary['updates']} updates ({summary['wall_seconds']:.1f} s, {summary['device']})")
    return 0


if __name__ == "__main__":
    sys.exit(cli())

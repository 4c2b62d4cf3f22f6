"""Training runs, one or many at once: `train_pack` trains K runs as one batched network (a pack),
`train` is a pack of one.

Each run writes its own run dir (see `dropreg.rundir`): `config.yaml`, `metrics.csv`, `last.ckpt`,
and at its end `summary.json`. Started again, a run resumes from its checkpoint, an ended run is not
redone, and a run dir holding another config's run keeps that run under replaced/. A run whose loss
becomes NaN/inf is summarized as `diverged` at the next evaluation and retired from its pack while
the others go on; a run that never gets below 90 % of chance-level error ends `failed_to_learn`.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path
from typing import Any, Iterable, Optional

from .identity import check_packable
from .schema import CudaGraph, TrainConfig, validate
from .status import Status

log = logging.getLogger("dropreg.train")


class TrainError(RuntimeError):
    """A run that cannot start (message: one line naming the culprit)."""


def _quiet_lightning() -> None:
    """Lightning's informational chatter off, its warnings kept (minus three that do not apply)."""
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning 2.6 on torch 2.13
    # inside SLURM jobs we run one process on purpose (see the LightningEnvironment plugin below)
    warnings.filterwarnings("ignore", message="The `srun` command is available")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


def train(config: dict[str, Any], run_dir: str | Path, callbacks: Iterable = ()) -> dict[str, Any]:
    """Train (or resume, or leave alone if ended) one run; return its summary."""
    return train_pack([config], [run_dir], callbacks)[0]


def train_pack(configs: list[dict[str, Any]], run_dirs: list[str | Path], callbacks: Iterable = (),
               wait_s: float = 0.0) -> list[dict[str, Any]]:
    """Train the runs `configs[k]` (resolved configs) in `run_dirs[k]` as one pack; their summaries.
    A run dir another live process is training is waited for up to `wait_s`, then used as it left it.

    Raises, before anything is trained: ConfigError/PackError (bad or unpackable configs),
    PreparedDataError (missing or altered data), Busy (a run dir held by another process),
    TrainError (two runs in one run dir, `cuda_graph=on` without CUDA); by then unusable files in a run
    dir have been set aside and config.yaml written. TrainError after training if a run did not end."""
    from .data.datamodule import PreparedDataModule
    from .regularizers import pack_order
    from .rundir import RunDir

    if len(set(map(str, run_dirs))) != len(run_dirs):
        raise TrainError("one run dir given for two runs of a pack")
    settings = [validate(c) for c in configs]
    check_packable(configs, [str(d) for d in run_dirs])
    datamodule = PreparedDataModule(settings[0].dataset, settings[0].trainer.eval_batch_size)
    md5 = datamodule.check(settings)["npz_md5"]
    dirs = [RunDir(d, c, md5, notify=log.warning) for d, c in zip(run_dirs, configs)]
    try:
        for d in sorted(dirs, key=lambda d: str(d.path)):
            d.lock(wait_s)
        found = [d.inspect() for d in dirs]
        summaries = {i: s for i, (kind, s) in enumerate(found) if kind == "finished"}
        todo = [i for i, (kind, _) in enumerate(found) if kind != "finished"]
        for i in summaries:
            log.info(f"{dirs[i].path}: ended earlier ({summaries[i]['status']}); nothing to do")
        if todo:
            # slots ordered so that the members of each regularizer are contiguous (see pack_order)
            todo = [todo[j] for j in pack_order([settings[i].regularizer for i in todo])]
            resumed = {slot: found[i][1] for slot, i in enumerate(todo) if found[i][0] == "resume"}
            done = _fit([dirs[i] for i in todo], [settings[i] for i in todo], resumed, datamodule, md5, callbacks)
            summaries.update({i: done[slot] for slot, i in enumerate(todo) if slot in done})
    finally:
        for d in dirs:
            d.unlock()
    missing = [str(dirs[i].path) for i in range(len(dirs)) if i not in summaries]
    if missing:
        raise TrainError(f"training stopped before these runs ended: {', '.join(missing)}")
    return [summaries[i] for i in range(len(dirs))]


def _fit(dirs, settings: list[TrainConfig], resumed: dict[int, dict], datamodule, md5: str,
         callbacks: Iterable) -> dict[int, dict[str, Any]]:
    import pytorch_lightning as pl
    import torch
    from lightning_fabric.plugins.environments import LightningEnvironment

    from .cpu_memory import keep_freed_memory
    from .module import PackedClassifier
    from .recorder import PackRecorder

    _quiet_lightning()
    t = settings[0].trainer
    if t.threads:
        torch.set_num_threads(t.threads)
    torch.set_float32_matmul_precision(t.matmul_precision)
    # Lightning sets torch's deterministic flag process-wide; the caller (another pack, the
    # benchmark) gets its own back
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        recorder = PackRecorder(dirs, settings, resumed, md5)
        trainer = pl.Trainer(
            accelerator=t.accelerator, devices=1, precision=t.precision, max_epochs=1, val_check_interval=1,
            num_sanity_val_steps=0, deterministic=t.deterministic, logger=False, enable_checkpointing=False,
            enable_model_summary=False, enable_progress_bar=False, log_every_n_steps=1,
            callbacks=[recorder, *callbacks],
            # One process, one device, also inside a SLURM job: Snakemake submits, retries and resumes;
            # Lightning's SLURM integration (auto-requeue, rank detection) stays out of the way.
            plugins=[LightningEnvironment()],
        )
        device = trainer.strategy.root_device
        if device.type == "cpu":
            keep_freed_memory()
        if CudaGraph(t.cuda_graph) is CudaGraph.on and device.type != "cuda":
            raise TrainError(f"trainer.cuda_graph=on: needs a CUDA device, training would run on {device}")
        use_graph = device.type == "cuda" and CudaGraph(t.cuda_graph) is not CudaGraph.off
        why_not = "trainer.cuda_graph=off" if CudaGraph(t.cuda_graph) is CudaGraph.off else f"training on {device.type}"
        module = PackedClassifier([d.config for d in dirs], use_cuda_graph=use_graph, graph_off_reason=why_not,
                                  settings=settings)
        module.model.resume({k: {"update": c.update, "state_dict": c.state_dict, "momentum": c.momentum}
                             for k, c in resumed.items()})
        for d in dirs:
            d.write_config()
        starts = sorted({c.update for c in resumed.values()})
        log.info(f"training {len(dirs)} run{'s' if len(dirs) > 1 else ''} as one pack on {device}"
                 f"{' (CUDA graph)' if use_graph else ''}: {', '.join(d.run_id for d in dirs)}"
                 f"{f'; resuming from update {starts}' if starts else ''}")
        trainer.fit(module, datamodule=datamodule)
    finally:
        torch.use_deterministic_algorithms(deterministic)
    return recorder.summaries


# ----------------------------------------------------------------------------- the command line
_INFO_FLAGS = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc",
               "--version", "--resolve", "--package", "-p")
_MULTIRUN_FLAGS = ("-m", "--multirun")
# another primary config (`-cn NAME`, `--config-dir=DIR`, ...): Hydra composes it, and each run is
# validated when it starts instead of all of them up front
_CONFIG_FLAGS = ("--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd")


def _expand(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The runs a command line asks for: with -m every combination of its sweeps, else one."""
    import itertools

    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = [o for o in OverridesParser.create().parse_overrides(overrides) if not o.key_or_group.startswith("hydra")]
    choices = []
    for o in parsed:
        if multirun and o.is_sweep_override():
            choices.append([f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()])
        else:
            choices.append([o.input_line])
    return [list(c) for c in itertools.product(*choices)]


def _one_line_errors() -> tuple[type[BaseException], ...]:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from .atomic import DiskFull
    from .errors import ConfigError
    from .data.prepared import PreparedDataError
    from .locks import Busy

    return ConfigError, HydraException, OmegaConfBaseException, PreparedDataError, Busy, DiskFull, TrainError


def _result_line(run_dir: str, summary: dict[str, Any]) -> str:
    if summary["status"] == Status.DIVERGED:
        return f"dropreg.train: {run_dir}: diverged at update {summary['diverged_at_update']}"
    note = " (failed to learn: chance level)" if summary["status"] == Status.FAILED_TO_LEARN else ""
    return (f"dropreg.train: {run_dir}: test error {summary['test_error']:.2f}% after {summary['updates']} updates "
            f"({summary['wall_seconds']:.1f} s, {summary['device']}){note}")


def _task(cfg) -> None:
    """Hydra's task: one run in Hydra's output dir (hydra.run.dir, or the sweep's subdir under -m)."""
    from hydra.core.hydra_config import HydraConfig

    from omegaconf import OmegaConf

    from .errors import one_line
    from .schema import without_hydra

    run_dir = HydraConfig.get().runtime.output_dir
    try:  # train() validates it
        summary = train(OmegaConf.to_container(without_hydra(cfg)), run_dir)
    except _one_line_errors() as exc:
        print(f"dropreg.train: error: {one_line(exc)}", file=sys.stderr)
        raise SystemExit(2) from None
    print(_result_line(run_dir, summary), flush=True)


def cli(argv: Optional[list[str]] = None) -> int:
    """`python -m dropreg.train`: a Hydra app (--help, --cfg, --info, -m, --shell-completion). Every
    run it would start is composed and validated first, so a bad key or value fails in one line
    (exit 2) before any run begins or any directory is made."""
    import hydra

    from .compose import Composer, conf_dir
    from .errors import one_line
    from .schema import register_schema

    argv = list(sys.argv[1:] if argv is None else argv)
    flags = [a for a in argv if a.startswith("-")]
    overrides = [a for a in argv if not a.startswith("-")]
    if not any(f.split("=")[0] in _INFO_FLAGS + _CONFIG_FLAGS for f in flags):
        try:
            compose = Composer()
            for run in _expand(overrides, multirun=any(f in _MULTIRUN_FLAGS for f in flags)):
                validate(compose(run))
        except _one_line_errors() as exc:
            print(f"dropreg.train: error: {one_line(exc)}", file=sys.stderr)
            return 2
    register_schema()
    app = hydra.main(config_path=str(conf_dir()), config_name="train", version_base="1.3")(_task)
    saved, root = sys.argv, logging.getLogger()
    handlers, level = root.handlers[:], root.level
    sys.argv = ["dropreg.train", *argv]
    try:
        app()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        sys.argv = saved
        # Hydra configured logging for its job (console + <run dir>/train.log); put back what the
        # caller had, so a second in-process call does not write to the first one's streams
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers, root.level = handlers, level
    return 0


if __name__ == "__main__":
    sys.exit(cli())

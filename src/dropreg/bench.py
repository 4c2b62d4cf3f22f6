"""Milliseconds per weight update: the project's training path against a plain PyTorch loop.

    python -m dropreg.bench [--device cpu|cuda] [--updates 300] [--repeats 2]

Both sides train `paper_mlp` (784-1024-1024-2048-10) at batch 100 on the same on-device mnist5k
tensors, with the same regularizer (dropout + max-norm by default: masks, penalties and the
projection are part of the work), the same SGD with momentum ramp and learning-rate decay. The plain
loop is what one would write by hand; the project path is `dropreg.train.train` (Lightning, the
LightningModule's metrics and divergence tracking, the data module). Start-up and the final
evaluation are excluded: only the steady state between update `warmup` and the last one is timed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from .config import compose, validate
from .data.datamodule import DeviceBatches, PreparedDataModule
from .model import MLP
from .regularizers import build_constraints, build_penalties
from .schedules import lr_factor, momentum_at
from .train import train


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _StepClock(pl.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        _sync(pl_module.device)
        self.times.append(time.perf_counter())


def _ms_per_update(times: list[float], warmup: int) -> float:
    return 1000.0 * (times[-1] - times[warmup - 1]) / (len(times) - warmup)


def plain_loop(overrides: list[str], device: torch.device, warmup: int) -> float:
    """A hand-written loop over the same tensors and the same math; returns ms per update."""
    s = validate(compose(overrides))
    torch.manual_seed(s.seed)
    dm = PreparedDataModule(s.dataset, s.optim.batch_size, s.trainer.eval_batch_size, s.seed)
    dm.prepare_data()
    dm.setup(device=device)
    model = MLP(s.dataset.input_dim, s.dataset.num_classes, s.model, s.regularizer.dropout).to(device)
    penalties = build_penalties(s.regularizer, s.model.activation, s.optim.max_updates)
    constraints = build_constraints(s.regularizer)
    opt = torch.optim.SGD(model.parameters(), lr=s.optim.lr, momentum=momentum_at(s.optim, 0))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: lr_factor(s.optim, t))
    batches = iter(DeviceBatches(*dm.tensors["train"], s.optim.batch_size, s.seed))
    times = []
    model.train()
    for t in range(s.optim.max_updates):
        for group in opt.param_groups:
            group["momentum"] = momentum_at(s.optim, t)
        x, y = next(batches)
        loss = F.cross_entropy(model(x), y)
        for penalty in penalties:
            value = penalty(model, [], t)
            if value is not None:
                loss = loss + value
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        for constraint in constraints:
            constraint.apply(model)
        _sync(device)
        times.append(time.perf_counter())
    return _ms_per_update(times, warmup)


def project_path(overrides: list[str], warmup: int) -> float:
    clock = _StepClock()
    with tempfile.TemporaryDirectory() as run_dir:
        train(compose(overrides), Path(run_dir), callbacks=[clock])
    return _ms_per_update(clock.times, warmup)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        choices=["cpu", "cuda"])
    parser.add_argument("--updates", type=int, default=300, help="timed updates per measurement")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2, help="alternating measurements per side")
    parser.add_argument("--regularizer", default="dropout_max_norm")
    parser.add_argument("--data-dir", default="data/prepared")
    args = parser.parse_args(argv)
    total = args.warmup + args.updates
    overrides = [f"dataset.data_dir={args.data_dir}", "model=paper_mlp", "optim=paper",
                 f"regularizer={args.regularizer}", f"optim.max_updates={total}",
                 f"trainer.eval_every={total}", f"trainer.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}"]
    device = torch.device(args.device)
    plain, project = [], []
    for _ in range(args.repeats):  # alternate, so drift in machine load hits both sides alike
        plain.append(plain_loop(overrides, device, args.warmup))
        project.append(project_path(overrides, args.warmup))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    p, q = min(plain), min(project)
    print(f"paper_mlp, batch 100, {args.regularizer}, {args.updates} timed updates, {name}")
    print(f"  plain PyTorch loop : {p:8.3f} ms/update  (runs: {', '.join(f'{v:.3f}' for v in plain)})")
    print(f"  dropreg (Lightning): {q:8.3f} ms/update  (runs: {', '.join(f'{v:.3f}' for v in project)})")
    print(f"  ratio dropreg/plain: {q / p:8.3f}  (median of runs: {statistics.median(project) / statistics.median(plain):.3f})")


if __name__ == "__main__":
    main()

"""Milliseconds per run-update: packed training at K = 1, 8, 24 against a plain PyTorch loop.

    python -m dropreg.bench [--device cpu|cuda] [--packs 1 8 24] [--updates N] [--json]
        [--matmul-precision highest|high] [--cuda-graph auto|off]

Also times the same packed update driven by a bare loop (no Lightning) for the largest K, so the
cost of hosting the loop in Lightning shows as a ratio.

Both sides train `paper_mlp` (784-1024-1024-2048-10) at batch 100 on the same on-device mnist5k
tensors with the same regularizer (dropout + max-norm by default), the same SGD with momentum ramp
and learning-rate decay. The plain loop is what one would write by hand for one run (`nn.Linear`
layers, `torch.optim.SGD`, `nn.Dropout`, `torch.renorm`), its schedules from the plain-Python
definitions in `dropreg.schedules`; the project side is `dropreg.train.train_pack` with K members
(different seeds), Lightning, evaluation and checkpoints included but outside the timed interval:
only the steady state of one evaluation interval after a warm-up interval is timed. With dropout
off, the plain loop and a pack of one compute the same updates (tests/test_packing.py checks it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from .batches import MemberBatches
from .config import Composer, as_container, settings_of
from .cpu_memory import keep_freed_memory
from .data.datamodule import PreparedDataModule
from .net import init_weight_
from .schedules import lr_factor, momentum_at
from .train import train_pack


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_overrides(regularizer: str, updates: int, data_dir: str, device: str, extra: list[str] = ()) -> list[str]:
    """Two evaluation intervals of `updates` updates each: a warm-up, then the timed one."""
    return [f"dataset.data_dir={data_dir}", "dataset=mnist5k", "model=paper_mlp", "optim=paper", "optim.lr=0.1",
            f"regularizer={regularizer}", f"optim.max_updates={2 * updates}", f"trainer.eval_every={updates}",
            f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}", *extra]


class PlainMLP(nn.Module):
    """The hand-written net: nn.Linear layers, ReLU, nn.Dropout with the run's retain probabilities."""

    def __init__(self, widths: list[int], input_retain: float, hidden_retain: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.drop_in = nn.Dropout(1 - input_retain) if input_retain < 1 else nn.Identity()
        self.drop_hidden = nn.Dropout(1 - hidden_retain) if hidden_retain < 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop_in(x)
        for layer in self.layers[:-1]:
            h = self.drop_hidden(torch.relu(layer(h)))
        return self.layers[-1](h)


# what the hand-written loop implements (dropout, L2 as λ Σ w² on the weights, max-norm)
PLAIN_REGULARIZERS = ("none", "l2", "max_norm", "dropout", "dropout_l2", "dropout_max_norm")


def plain_loop(overrides: list[str], device: torch.device, updates: int, timed_from: int = 0):
    """Train one run by hand; returns (ms per update from `timed_from` on, per-update losses, net)."""
    s = settings_of(Composer()(overrides))
    dm = PreparedDataModule(s.dataset, s.trainer.eval_batch_size)
    dm.check([s])
    dm.setup(device=device)
    x_all, y_all = dm.tensors["train"]
    widths = [s.dataset.input_dim, *s.model.hidden, s.dataset.num_classes]
    model = PlainMLP(widths, s.regularizer.dropout.input_retain, s.regularizer.dropout.hidden_retain)
    gen = torch.Generator().manual_seed(s.seed)
    with torch.no_grad():
        for layer in model.layers:  # the same draws as the pack's per-member init
            init_weight_(layer.weight, s.model.init, s.model.init_std, gen)
            layer.bias.zero_()
    model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=s.optim.lr, momentum=momentum_at(s.optim, 0))
    batches = MemberBatches(s.dataset.train_subset or len(y_all), s.optim.batch_size, s.seed)
    idx = torch.from_numpy(batches.indices(0, updates)).to(device)
    radius = s.regularizer.max_norm.radius
    l2 = s.regularizer.l2.weight
    losses, times = [], []
    for t in range(updates):
        for group in opt.param_groups:
            group["lr"] = s.optim.lr * lr_factor(s.optim, t)
            group["momentum"] = momentum_at(s.optim, t)
        x, y = x_all[idx[t]], y_all[idx[t]]
        loss = F.cross_entropy(model(x), y)
        if l2:
            loss = loss + l2 * sum(layer.weight.square().sum() for layer in model.layers)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if radius is not None:
            with torch.no_grad():
                for layer in model.layers[:-1]:
                    layer.weight.renorm_(p=2, dim=0, maxnorm=radius)
        losses.append(loss.detach())
        if t >= timed_from - 1:
            _sync(device)
            times.append(time.perf_counter())
    ms = 1000.0 * (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else float("nan")
    return ms, [float(v) for v in losses], model


class _IntervalClock(pl.Callback):
    """Wall time of each training step (= one evaluation interval), device work included."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        _sync(module.device)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        _sync(module.device)
        self.seconds.append(time.perf_counter() - self._start)


def _pack_configs(overrides: list[str], members: int) -> list[dict]:
    comp = Composer()
    return [as_container(settings_of(comp([*overrides, f"seed={k + 1}"]))) for k in range(members)]


def packed_loop(overrides: list[str], members: int, updates: int, device: torch.device) -> float:
    """ms per run-update of the same packed update driven by a bare loop, no Lightning: what the
    project's Lightning-hosted path is measured against (its overhead must stay within 15 %)."""
    from .batches import PackBatches
    from .module import PackedClassifier
    from .update import PackUpdate

    module = PackedClassifier(_pack_configs(overrides, members)).to(device)
    module.configure_optimizers()
    s = module.settings[0]
    dm = PreparedDataModule(s.dataset, s.trainer.eval_batch_size)
    dm.check(module.settings)
    dm.setup(device=device)
    x, y = dm.tensors["train"]
    batches = PackBatches([len(y)] * members, module.batch_size, [m.seed for m in module.settings])
    step = PackUpdate(module, x, y, use_graph=device.type == "cuda" and s.trainer.cuda_graph != "off")
    module.dropout.reseed([m.seed for m in module.settings], 0)
    step.run(0, updates, batches.indices)  # warm-up (and the capture on CUDA)
    _sync(device)
    start = time.perf_counter()
    step.run(updates, updates, batches.indices)
    _sync(device)
    return 1000.0 * (time.perf_counter() - start) / (updates * members)


def packed(overrides: list[str], members: int, updates: int) -> float:
    """ms per run-update of a pack of `members` runs (seeds 1..K): the second of two intervals of
    `updates` updates (the first warms up, and captures the CUDA graph on GPU)."""
    configs = _pack_configs(overrides, members)
    clock = _IntervalClock()
    with tempfile.TemporaryDirectory() as root:
        train_pack(configs, [Path(root) / f"run{k}" for k in range(members)], callbacks=[clock])
    return 1000.0 * clock.seconds[-1] / (updates * members)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--packs", type=int, nargs="+", default=[1, 8, 24], help="pack sizes K to time")
    parser.add_argument("--updates", type=int, help="timed updates (default: 30 on CPU, 2000 on CUDA)")
    parser.add_argument("--repeats", type=int, default=2, help="measurements of each, the best is reported")
    parser.add_argument("--regularizer", default="dropout_max_norm", choices=PLAIN_REGULARIZERS,
                        help="what both sides train (the plain loop implements these)")
    parser.add_argument("--matmul-precision", default="highest", choices=["highest", "high"],
                        help="high: TF32 matrix products on CUDA")
    parser.add_argument("--cuda-graph", default="auto", choices=["auto", "off"])
    parser.add_argument("--data-dir", default="data/prepared")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    updates = args.updates or (2000 if device.type == "cuda" else 30)
    extra = [f"trainer.matmul_precision={args.matmul_precision}", f"trainer.cuda_graph={args.cuda_graph}"]
    overrides = bench_overrides(args.regularizer, updates, args.data_dir, args.device, extra)
    torch.set_float32_matmul_precision(args.matmul_precision)
    if device.type == "cpu":
        keep_freed_memory()  # what training does on the CPU; applied to both sides alike
    plain, pack, loop = [], {k: [] for k in args.packs}, []
    largest = max(args.packs)
    for _ in range(args.repeats):  # alternate, so drift in machine load hits every side alike
        plain.append(plain_loop(overrides, device, 2 * updates, timed_from=updates)[0])
        loop.append(packed_loop(overrides, largest, updates, device))
        for k in args.packs:
            pack[k].append(packed(overrides, k, updates))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    result = {"device": name, "regularizer": args.regularizer, "batch_size": 100, "timed_updates": updates,
              "matmul_precision": args.matmul_precision, "cuda_graph": args.cuda_graph,
              "plain_ms_per_update": round(min(plain), 4),
              "packed_ms_per_run_update": {str(k): round(min(v), 4) for k, v in pack.items()},
              "packed_loop_ms_per_run_update": {str(largest): round(min(loop), 4)},
              "runs": {"plain": plain, "packed_loop": loop, **{str(k): v for k, v in pack.items()}}}
    if args.json:
        print(json.dumps(result))
        return
    p = min(plain)
    print(f"paper_mlp, batch 100, {args.regularizer}, {updates} timed updates, {name}, "
          f"matmul {args.matmul_precision}, cuda_graph {args.cuda_graph}")
    print(f"  plain PyTorch loop, one run : {p:8.3f} ms/update")
    for k, v in pack.items():
        print(f"  dropreg pack of {k:>2}          : {min(v):8.3f} ms/run-update  ({min(v) / p:.2f} x plain; "
              f"median of runs {statistics.median(v):.3f})")
    print(f"  bare packed loop of {largest:>2}      : {min(loop):8.3f} ms/run-update  (dropreg / bare loop: "
          f"{min(pack[largest]) / min(loop):.3f})")


if __name__ == "__main__":
    main()

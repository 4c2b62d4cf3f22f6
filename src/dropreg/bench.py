"""Milliseconds per run-update of the packs the pipeline trains, against a plain PyTorch loop and the
device's floor.

    python -m dropreg.bench [--device cpu|cuda] [--packs 1 8 24] [--mixed 24] [--updates N] [--json]
    python -m dropreg.bench --estimate --preset paper [--overrides '[...]']   (see dropreg.estimate)

For the current device: the plain loop; packs of one regularizer (dropout + max-norm by default) at
K = 1, 8, 24; the Table 9 mixed pack (the paper preset's eight Table 9 rows cycled over K members,
seeds 1, 2, 3, ...), the pack the pipeline actually trains; the same packed update in a bare loop
without Lightning (the cost of hosting the loop shows as a ratio); and the device's roofline
(`dropreg.roofline`: measured GEMM rate and copy bandwidth, the FLOPs and bytes a run-update needs)
with every figure also as a fraction of the floor. On CUDA each figure is taken in FP32, TF32 and
bf16-mixed, each with the CUDA graph and eagerly.

Every side trains `paper_mlp` (784-1024-1024-2048-10) at batch 100 on the same on-device mnist5k
tensors with the same SGD with momentum ramp and learning-rate decay, in the same torch mode
(deterministic algorithms as training uses them, the same matmul precision). The plain loop is what
one would write by hand for one run (`nn.Linear` layers, `torch.optim.SGD`, `nn.Dropout`,
`torch.renorm`), its schedules from the plain-Python definitions in `dropreg.schedules`; it reads
nothing back from the device inside the timed updates. Packs are timed through
`dropreg.train.train_pack`, Lightning, evaluation and checkpoints included but outside the timed
interval: only the second of two evaluation intervals is timed (the first warms up, and captures
and checks the CUDA graph). With dropout off, the plain loop and a pack of one compute the same
updates (tests/test_packing.py checks it).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from . import roofline
from .batches import MemberBatches
from .compose import Composer, conf_dir
from .schema import as_container, validate
from .cpu_memory import keep_freed_memory
from .data.datamodule import PreparedDataModule
from .net import init_weight_
from .schedules import lr_factor, momentum_at
from .timing import bare_loop, sync, torch_mode

# (precision, matmul precision): FP32, TF32, bf16-mixed
VARIANTS = {"fp32": ("32-true", "highest"), "tf32": ("32-true", "high"), "bf16": ("bf16-mixed", "highest")}


def bench_overrides(regularizer: str, updates: int, data_dir: str, device: str, extra: list[str] = ()) -> list[str]:
    """Two evaluation intervals of `updates` updates each: a warm-up, then the timed one."""
    return [f"dataset.data_dir={data_dir}", "dataset=mnist5k", "model=paper_mlp", "optim=paper", "optim.lr=0.1",
            f"regularizer={regularizer}", f"optim.max_updates={2 * updates}", f"trainer.eval_every={updates}",
            f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}", *extra]


def table9_rows() -> list[str]:
    """The regularizers of the paper preset's Table 9 study, in its order."""
    preset = yaml.safe_load((conf_dir().parent / "presets" / "paper.yaml").read_text())
    return list(preset["studies"]["table9"]["regularizers"])


def mixed_configs(overrides: list[str], members: int) -> list[dict]:
    """The Table 9 mixed pack: the paper's rows cycled over the members, seed 1 for the first cycle,
    2 for the second, ... (24 members: eight rows x three seeds, as the pipeline packs them)."""
    rows, comp = table9_rows(), Composer()
    return [as_container(validate(comp([*overrides, f"regularizer={rows[k % len(rows)]}",
                                           f"seed={k // len(rows) + 1}"]))) for k in range(members)]


def pack_configs(overrides: list[str], members: int) -> list[dict]:
    comp = Composer()
    return [as_container(validate(comp([*overrides, f"seed={k + 1}"]))) for k in range(members)]


# ----------------------------------------------------------------------------- the plain loop
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
    """Train one run by hand; returns (ms per update from `timed_from` on, per-update data losses, net).
    Nothing is read back from the device until the timed updates are done."""
    s = validate(Composer()(overrides))
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
    radius, l2 = s.regularizer.max_norm.radius, s.regularizer.l2.weight
    losses, start = [], None
    with torch_mode(s, device):
        for t in range(updates):
            if t == timed_from:
                sync(device)
                start = time.perf_counter()
            for group in opt.param_groups:
                group["lr"] = s.optim.lr * lr_factor(s.optim, t)
                group["momentum"] = momentum_at(s.optim, t)
            x, y = x_all[idx[t]], y_all[idx[t]]
            data_loss = F.cross_entropy(model(x).float(), y)
            loss = data_loss + l2 * sum(layer.weight.square().sum() for layer in model.layers) if l2 else data_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if radius is not None:
                with torch.no_grad():
                    for layer in model.layers[:-1]:
                        layer.weight.renorm_(p=2, dim=0, maxnorm=radius)
            losses.append(data_loss.detach())
        sync(device)
    timed = updates - timed_from
    ms = 1000.0 * (time.perf_counter() - start) / timed if start is not None and timed > 0 else float("nan")
    return ms, [float(v) for v in losses], model


# ----------------------------------------------------------------------------- packs
class _IntervalClock(pl.Callback):
    """Wall time of each training step (= one evaluation interval), device work included."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        sync(module.device)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        sync(module.device)
        self.seconds.append(time.perf_counter() - self._start)


def packed(configs: list[dict], updates: int) -> float:
    """ms per run-update of a pack trained by `train_pack`: the second of two intervals of `updates`."""
    from .train import train_pack

    clock = _IntervalClock()
    with tempfile.TemporaryDirectory() as root:
        train_pack(configs, [Path(root) / f"run{k}" for k in range(len(configs))], callbacks=[clock])
    return 1000.0 * clock.seconds[-1] / (updates * len(configs))


def measure_variant(args, device: torch.device, variant: str, graph: str, updates: int) -> dict:
    """Every figure of one (precision, graph) variant, best of `args.repeats`."""
    precision, matmul = VARIANTS[variant]
    extra = [f"trainer.precision={precision}", f"trainer.matmul_precision={matmul}", f"trainer.cuda_graph={graph}"]
    overrides = bench_overrides(args.regularizer, updates, args.data_dir, device.type, extra)
    runs: dict[str, list[float]] = {"plain": [], "packed_loop": [], **{str(k): [] for k in args.packs},
                                    f"mixed{args.mixed}": []}
    largest = max(args.packs)
    for _ in range(args.repeats):  # alternate, so drift in machine load hits every side alike
        runs["plain"].append(plain_loop(overrides, device, 2 * updates, timed_from=updates)[0])
        if args.bare:
            runs["packed_loop"].append(bare_loop(pack_configs(overrides, largest), updates, device,
                                                 device.type == "cuda" and graph != "off")[0])
        for k in args.packs:
            runs[str(k)].append(packed(pack_configs(overrides, k), updates))
        if args.mixed:
            runs[f"mixed{args.mixed}"].append(packed(mixed_configs(overrides, args.mixed), updates))
    best = {k: round(min(v), 4) for k, v in runs.items() if v}
    out = {"variant": variant, "precision": precision, "matmul_precision": matmul, "cuda_graph": graph,
           "plain_ms_per_update": best["plain"],
           "packed_ms_per_run_update": {str(k): best[str(k)] for k in args.packs}, "runs": runs}
    if args.bare:
        out["packed_loop_ms_per_run_update"] = {str(largest): best["packed_loop"]}
    if args.mixed:
        out["mixed_ms_per_run_update"] = {str(args.mixed): best[f"mixed{args.mixed}"]}
    return out


def _fractions(result: dict, floor: float) -> dict:
    frac = {"plain": round(floor / result["plain_ms_per_update"], 3),
            "packed": {k: round(floor / v, 3) for k, v in result["packed_ms_per_run_update"].items()}}
    if "mixed_ms_per_run_update" in result:
        frac["mixed"] = {k: round(floor / v, 3) for k, v in result["mixed_ms_per_run_update"].items()}
    return frac


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dropreg.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--packs", type=int, nargs="+", default=[1, 8, 24], help="pack sizes K of one regularizer")
    parser.add_argument("--mixed", type=int, default=24, help="members of the Table 9 mixed pack (0: none)")
    parser.add_argument("--updates", type=int, help="timed updates (default: 30 on CPU, 1000 on CUDA)")
    parser.add_argument("--repeats", type=int, default=2, help="measurements of each, the best is reported")
    parser.add_argument("--regularizer", default="dropout_max_norm", choices=PLAIN_REGULARIZERS,
                        help="what the plain loop and the single-regularizer packs train")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS),
                        help="precisions to time (default: fp32 on CPU; fp32 tf32 bf16 on CUDA)")
    parser.add_argument("--cuda-graph", nargs="+", default=None, choices=["auto", "off"],
                        help="on CUDA: with the graph (auto) and eagerly (off); default both")
    parser.add_argument("--no-bare", dest="bare", action="store_false", help="skip the bare (no Lightning) loop")
    parser.add_argument("--data-dir", default="data/prepared")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--estimate", action="store_true", help="the cost of a preset's plan on this device")
    parser.add_argument("--preset", default="paper", help="with --estimate: the preset (name or .yaml)")
    parser.add_argument("--overrides", default="[]", help="with --estimate: JSON list of --config overrides")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        keep_freed_memory()  # what training does on the CPU; applied to every side alike
    if args.estimate:
        from .estimate import main as estimate_main

        return estimate_main(args.preset, json.loads(args.overrides), device, args.json)
    cuda = device.type == "cuda"
    updates = args.updates or (1000 if cuda else 30)
    variants = args.variants or (["fp32", "tf32", "bf16"] if cuda else ["fp32"])
    if cuda and not torch.cuda.is_bf16_supported():
        variants = [v for v in variants if v != "bf16"]
    graphs = (args.cuda_graph or ["auto", "off"]) if cuda else ["off"]
    measured = [measure_variant(args, device, v, g, updates) for v in variants for g in graphs]
    torch.set_float32_matmul_precision("highest")
    roof = roofline.measure(device, [784, 1024, 1024, 2048, 10], 100)
    for m in measured:
        m["fraction_of_floor"] = _fractions(m, roof["floor_ms_per_run_update"])
    first = measured[0]
    name = torch.cuda.get_device_name(device) if cuda else f"cpu, {torch.get_num_threads()} threads"
    result = {"device": name, "regularizer": args.regularizer, "batch_size": 100, "timed_updates": updates,
              **{k: v for k, v in first.items() if k != "variant"}, "roofline": roof, "variants": measured}
    if args.mixed:
        single = first["packed_ms_per_run_update"].get(str(args.mixed))
        if single:
            result["mixed_vs_single"] = round(first["mixed_ms_per_run_update"][str(args.mixed)] / single, 3)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"paper_mlp, batch 100, {updates} timed updates, {name}; floor {roof['floor_ms_per_run_update']:.3f} "
          f"ms/run-update (GEMM {roof['gemm_gflops']:.0f} GFLOP/s, copy {roof['copy_gbs']:.0f} GB/s)")
    for m in measured:
        p, frac = m["plain_ms_per_update"], m["fraction_of_floor"]
        print(f"{m['variant']} (precision {m['precision']}, matmul {m['matmul_precision']}), cuda_graph {m['cuda_graph']}:")
        print(f"  plain PyTorch loop, one run ({args.regularizer}) : {p:8.3f} ms/update        floor/time {frac['plain']:.2f}")
        for k, v in m["packed_ms_per_run_update"].items():
            print(f"  pack of {k:>2} ({args.regularizer}){'':>6}: {v:8.3f} ms/run-update  {v / p:.2f} x plain, "
                  f"floor/time {frac['packed'][k]:.2f}")
        for k, v in m.get("mixed_ms_per_run_update", {}).items():
            single = m["packed_ms_per_run_update"].get(k)
            versus = f"{v / single:.2f} x the single-regularizer pack, " if single else ""
            print(f"  Table 9 mixed pack of {k:>2}      : {v:8.3f} ms/run-update  {versus}{v / p:.2f} x plain, "
                  f"floor/time {frac['mixed'][k]:.2f}")
        for k, v in m.get("packed_loop_ms_per_run_update", {}).items():
            print(f"  bare packed loop of {k:>2}        : {v:8.3f} ms/run-update  (Lightning-hosted / bare: "
                  f"{m['packed_ms_per_run_update'][k] / v:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

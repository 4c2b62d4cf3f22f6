"""`make gpu-check`: the project's own acceptance of its CUDA path, in one command, into one folder.

    python -m dropreg.gpu_check [--out gpu-check] [--device cuda] [--skip-bench] [--skip-pytest]

1. RNG under graphs: per-member generators registered with a captured graph, reseeded between
   replays as training does, draw what eager draws with the same seeds.
2. The Table 9 mixed pack (its eight rows, `paper_mlp`, mnist5k) over two evaluation intervals of
   more than `update.BLOCK` updates, in FP32, TF32 and bf16-mixed: the graph's metrics equal the
   eager ones (to `--rtol`), the graph passed its own check, and a run interrupted after the first
   interval and resumed ends with the straight run's metrics, bit for bit.
3. Kernels per update, eager and replayed (torch.profiler).
4. The benchmark's `--json` (`dropreg.bench`), and 5. `pytest -m gpu`.
Everything goes to `<out>/`: `summary.json` (every check: passed, numbers) and the logs. Exit 0 when
every check passed. About 5 minutes on an H100/H200. On a CPU the pack checks run with the graph
off on both sides (a dry run of this script, not of the graph).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .status import Status
from .update import BLOCK

PRECISIONS = {"fp32": ["trainer.precision=32-true", "trainer.matmul_precision=highest"],
              "tf32": ["trainer.precision=32-true", "trainer.matmul_precision=high"],
              "bf16": ["trainer.precision=bf16-mixed", "trainer.matmul_precision=highest"]}


def rng_replay_check(members: int = 4, replays: int = 5, intervals: int = 3) -> dict:
    """Registered per-member generators under a graph, reseeded between replays, against eager draws."""
    from .dropout import block_seed
    from .update import register_generators

    gens = [torch.Generator(device="cuda") for _ in range(members)]
    out = torch.zeros(members, 1000, device="cuda")
    for k, g in enumerate(gens):
        g.manual_seed(block_seed(k + 1, 0))
    warm = torch.cuda.Stream()
    warm.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(warm):
        for k, g in enumerate(gens):
            torch.rand(out[k].shape, generator=g, out=out[k])
    torch.cuda.current_stream().wait_stream(warm)
    graph = torch.cuda.CUDAGraph()
    register_generators(graph, gens)
    with torch.cuda.graph(graph):
        for k, g in enumerate(gens):
            torch.rand(out[k].shape, generator=g, out=out[k])
    worst = 0.0
    for interval in range(intervals):
        for k, g in enumerate(gens):
            g.manual_seed(block_seed(k + 1, interval * 1000))
        replayed = []
        for _ in range(replays):
            graph.replay()
            replayed.append(out.clone())
        for k in range(members):
            g = torch.Generator(device="cuda").manual_seed(block_seed(k + 1, interval * 1000))
            for r in range(replays):
                eager = torch.rand(1000, device="cuda", generator=g)
                worst = max(worst, float((replayed[r][k] - eager).abs().max()))
    return {"passed": worst == 0.0, "max_abs_difference": worst, "members": members, "replays": replays,
            "intervals": intervals}


def _mixed_configs(data_dir: str, device: str, precision: str, graph: str, every: int) -> list[dict]:
    from .bench import mixed_configs

    return mixed_configs([f"dataset.data_dir={data_dir}", "dataset=mnist5k", "model=paper_mlp", "optim=paper",
                          f"optim.max_updates={2 * every}", f"trainer.eval_every={every}",
                          f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}", f"trainer.cuda_graph={graph}",
                          *PRECISIONS[precision]], 8)


class _StopAfterFirst(Exception):
    pass


def pack_check(data_dir: str, device: str, precision: str, every: int, rtol: float, root: Path) -> dict:
    """graph = eager, and resumed = straight, for the mixed pack in one precision."""
    import pytorch_lightning as pl

    from .train import train_pack

    class StopAfterFirst(pl.Callback):
        def on_validation_end(self, trainer, module) -> None:
            raise _StopAfterFirst

    graph = "on" if device == "cuda" else "off"
    out: dict = {"precision": precision, "updates": 2 * every, "interval": every}
    runs = {}
    for name, mode in (("graph", graph), ("eager", "off")):
        start = time.perf_counter()
        dirs = [root / precision / name / str(k) for k in range(8)]
        summaries = train_pack(_mixed_configs(data_dir, device, precision, mode, every), dirs)
        out[f"{name}_seconds"] = round(time.perf_counter() - start, 1)
        runs[name] = [pd.read_csv(d / "metrics.csv") for d in dirs]
        if name == "graph":
            out["graph_used"] = all(s["cuda_graph"] for s in summaries) if device == "cuda" else None
            out["graph_reason"] = summaries[0]["cuda_graph_reason"]
            out["statuses"] = [s["status"] for s in summaries]
    diffs = [float(np.nanmax(np.abs(a.to_numpy() - b.to_numpy()) / np.maximum(np.abs(b.to_numpy()), 1e-12)))
             for a, b in zip(runs["graph"], runs["eager"])]
    out["graph_vs_eager_max_rel_difference"] = max(diffs)
    cut = [root / precision / "resumed" / str(k) for k in range(8)]
    configs = _mixed_configs(data_dir, device, precision, graph, every)
    try:
        train_pack(configs, cut, callbacks=[StopAfterFirst()])
    except _StopAfterFirst:
        pass
    train_pack(configs, cut)
    straight = [root / precision / "graph" / str(k) / "metrics.csv" for k in range(8)]
    out["resumed_equals_straight"] = all(Path(a).read_bytes() == (b / "metrics.csv").read_bytes()
                                         for a, b in zip(straight, cut))
    out["passed"] = bool(out["graph_vs_eager_max_rel_difference"] <= rtol and out["resumed_equals_straight"]
                         and out.get("graph_used") is not False and all(s == Status.COMPLETED for s in out["statuses"]))
    return out


def kernels_per_update(data_dir: str) -> dict:
    """CUDA kernels launched by one eager update and by one graph replay of the mixed pack (K = 8)."""
    from torch.profiler import ProfilerActivity, profile

    from .timing import bare_loop

    result = {}
    for name, use_graph in (("eager", False), ("graph", True)):
        _, step = bare_loop(_mixed_configs(data_dir, "cuda", "fp32", "auto", 10), 10, torch.device("cuda"), use_graph)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            step.graph.replay() if step.graph is not None else step()
            torch.cuda.synchronize()
        result[name] = sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dropreg.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu-check")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cuda", "cpu"])
    parser.add_argument("--interval", type=int, default=BLOCK + 200, help="updates per evaluation interval (> BLOCK)")
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=list(PRECISIONS))
    parser.add_argument("--rtol", type=float, default=1e-4, help="graph vs eager metrics, relative")
    parser.add_argument("--skip-bench", action="store_true")
    parser.add_argument("--skip-pytest", action="store_true")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from .data.embedded import prepare_mnist5k

    data_dir = str(out / "prepared")
    prepare_mnist5k(data_dir)
    cuda = args.device == "cuda"
    summary: dict = {"device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
                     "started": time.strftime("%Y-%m-%d %H:%M:%S")}

    def save() -> None:
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    if cuda:
        summary["rng_replay"] = rng_replay_check()
        save()
    with tempfile.TemporaryDirectory(dir=out) as root:
        summary["packs"] = [pack_check(data_dir, args.device, p, args.interval, args.rtol, Path(root))
                            for p in args.precisions if p != "bf16" or not cuda or torch.cuda.is_bf16_supported()]
    save()
    if cuda:
        summary["kernels_per_update"] = kernels_per_update(data_dir)
        save()
    if not args.skip_bench:
        bench = subprocess.run([sys.executable, "-m", "dropreg.bench", "--device", args.device, "--json", "--packs", "1",
                                "24", "--repeats", "1", "--data-dir", data_dir], capture_output=True, text=True)
        (out / "bench.log").write_text(bench.stdout + bench.stderr)
        summary["bench"] = json.loads(bench.stdout.strip().splitlines()[-1]) if bench.returncode == 0 else \
            {"passed": False, "returncode": bench.returncode}
        save()
    if not args.skip_pytest:
        tests = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider"],
                               capture_output=True, text=True)
        (out / "pytest-gpu.log").write_text(tests.stdout + tests.stderr)
        summary["pytest_gpu"] = {"passed": tests.returncode == 0, "last_line": (tests.stdout.strip().splitlines()
                                                                                  or [""])[-1]}
    checks = [summary.get("rng_replay", {}).get("passed", True), *(p["passed"] for p in summary["packs"]),
              summary.get("pytest_gpu", {}).get("passed", True), summary.get("bench", {}).get("passed", True)]
    summary["passed"] = all(checks)
    save()
    print(f"dropreg.gpu_check: {out / 'summary.json'}: {'all checks passed' if summary['passed'] else 'FAILED'}")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())

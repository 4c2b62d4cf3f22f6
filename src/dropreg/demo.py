"""`make demo`: train every regularizer on the embedded mnist5k on CPU and print their test errors.

A quick, offline look at the whole training path (minutes on a laptop). The numbers are not the
paper's: 3,500 training digits and a few thousand updates instead of 60,000 and a million; the
paper's Table 9 value is printed beside ours for orientation only.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .config import compose, conf_dir
from .paper import TABLE9_TEST_ERROR
from .train import train

DEMO_OVERRIDES = ["dataset=mnist5k", "model=udacity_mlp", "model.init=lecun_normal", "optim=demo",
                  "trainer=cpu"]


def all_regularizers() -> list[str]:
    return sorted(p.stem for p in (conf_dir() / "regularizer").glob("*.yaml"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/demo", help="run dirs go to OUT/<regularizer>")
    parser.add_argument("--regularizers", nargs="+", default=all_regularizers())
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = []
    for name in args.regularizers:
        cfg = compose([*DEMO_OVERRIDES, f"regularizer={name}", f"optim.max_updates={args.updates}",
                       f"seed={args.seed}"])
        rows.append((name, train(cfg, Path(args.out) / name)))
    print(f"\nmnist5k (3,500 train / 500 val / 1,000 test), 784-1024-10 ReLU, {args.updates} updates, seed {args.seed}")
    print(f"{'regularizer':<18} {'test error %':>12} {'best val %':>10} {'seconds':>8} {'paper Table 9 %':>16}")
    for name, s in rows:
        test = "diverged" if s["status"] == "diverged" else f"{s['test_error']:.2f}"
        best = "-" if s["best_val_error"] is None else f"{s['best_val_error']:.2f}"
        paper = TABLE9_TEST_ERROR.get(name)
        print(f"{name:<18} {test:>12} {best:>10} {s['wall_seconds']:>8.1f} {paper if paper else '-':>16}")
    print(f"total wall time {time.perf_counter() - started:.0f} s; run dirs under {args.out}/")


if __name__ == "__main__":
    main()

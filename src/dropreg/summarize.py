"""Collect the `summary.json` of every run of a study into one tidy table (one row per run).

    python -m dropreg.summarize --out results/<preset>/<study>.csv [--column name=config.key ...] SUMMARY...

`--column p=regularizer.dropout.hidden_retain` adds the run's value of that config key as column `p`
(`{regularizer}` in the key stands for the run's regularizer), so sweeps become plottable columns.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pandas as pd

from .atomic import atomic_path

COLUMNS = ["study", "run", "regularizer", "seed", "status", "diverged_at_update", "test_error",
           "best_val_error", "best_val_update", "final_val_error", "final_train_error", "updates",
           "wall_seconds", "device", "run_dir"]


def _lookup(config: dict, dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = node[part]
    return node


def collect(summary_files: list[str | Path], columns: dict[str, str], study: str) -> pd.DataFrame:
    rows = []
    for path in map(Path, summary_files):
        s = json.loads(path.read_text())
        reg = s["config"]["regularizer"]["name"]
        row = {"study": study, "run": path.parent.name, "regularizer": reg, "seed": s["config"]["seed"],
               **{k: s.get(k) for k in COLUMNS if k in s}, "run_dir": str(path.parent)}
        for name, key in columns.items():
            row[name] = _lookup(s["config"], key.format(regularizer=reg))
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame[[c for c in COLUMNS[:4] + list(columns) + COLUMNS[4:] if c in frame]]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("summaries", nargs="+")
    parser.add_argument("--out", required=True)
    parser.add_argument("--study", required=True)
    parser.add_argument("--column", action="append", default=[], metavar="NAME=KEY")
    args = parser.parse_args(argv)
    columns = dict(c.split("=", 1) for c in args.column)
    frame = collect(args.summaries, columns, args.study)
    with atomic_path(args.out) as tmp:
        frame.to_csv(tmp, index=False)
    print(f"dropreg.summarize: {args.out}: {len(frame)} runs, {int((frame['status'] == 'diverged').sum())} diverged")


if __name__ == "__main__":
    main()

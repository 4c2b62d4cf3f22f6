"""Collect the summaries of a study's runs into one tidy table (one row per run).

    python -m dropreg.summarize --out results/<preset>/<study>.csv SPEC...   (its final pack specs)

A run's sweep values (one column per sweep axis, empty where the axis does not apply to its
regularizer) and the values tuning selected for it come from its pack spec; every summary is read
strictly and must be its run dir's own, for the config the spec says (a summary copied from
another run dir is refused in one line naming the file).
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from .atomic import DiskFull, atomic_path
from .specs import SpecError, ended_runs
from .naming import describe_values
from .runfiles import RunFileError
from .status import ENDED_BADLY
from .tables import ACTIVITY_COLUMNS, RUN_COLUMNS

COLUMNS = RUN_COLUMNS


def collect(specs: list[str]) -> pd.DataFrame:
    rows, axes = [], []
    for spec, m, s in ended_runs(specs):
        axes += [a for a in m["sweep"] if a not in axes]
        rows.append({"study": spec["study"], "run": m["run_id"], "regularizer": m["regularizer"],
                     "seed": m["seed"], **m["sweep"], "selected": describe_values(m["selected"]),
                     **{k: s.get(k) for k in COLUMNS if k in s},
                     **{k: s.get("regularizer_activity", {}).get(k) for k in ACTIVITY_COLUMNS}, "run_dir": m["run_dir"]})
    frame = pd.DataFrame(rows)
    return frame[[c for c in COLUMNS[:4] + axes + COLUMNS[4:] if c in frame]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dropreg.summarize", description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="+", help="the study's final pack specs")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        frame = collect(args.specs)
        with atomic_path(args.out) as tmp:
            frame.to_csv(tmp, index=False)
    except (SpecError, RunFileError, DiskFull) as exc:
        print(f"dropreg.summarize: error: {exc}", file=sys.stderr)
        return 1
    bad = {s: int((frame["status"] == s).sum()) for s in ENDED_BADLY}
    print(f"dropreg.summarize: {args.out}: {len(frame)} runs" + "".join(f", {n} {s}" for s, n in bad.items() if n))
    return 0


if __name__ == "__main__":
    sys.exit(main())

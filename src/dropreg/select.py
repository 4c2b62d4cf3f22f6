"""Each regularizer's hyperparameters chosen on the validation split, as the paper did (§6.5, B.1).

    python -m dropreg.select --study S --selected results/<preset>/<study>/selected.yaml
        --table results/<preset>/<study>/tuning.csv SPEC...        (the study's tuning pack specs)

Per regularizer, every candidate of the study's `tune.grid` trained with each tuning seed on the
train/validation split. The selected candidate has the lowest mean *final* validation error over
the seeds (the model at the end of the budget: the study's runs use no early stopping either);
ties go to the lower mean best validation error, then to the candidate listed first. A candidate
with a seed that diverged or failed to learn is never selected; when that is every candidate of a
regularizer, the study stops here with one line (exit 1) naming the study and the regularizer.
A candidate with a seed whose validation error spiked (rose more than SPIKE_POINTS above its lowest
earlier value, `largest_val_rise` in its summary) ranks after every candidate without one: at the
edge of stability the final value is a coin toss, so a rate that spikes in tuning spikes in some
final seeds, and which seed spikes changes from one CPU to the next.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import pandas as pd
import yaml

from .atomic import DiskFull, atomic_path, write_text
from .naming import describe_values, hydra_value, short_key
from .runfiles import RunFileError
from .specs import SpecError, ended_runs
from .tables import CHOSEN
from .status import Status

# a rise of the validation error this far above its lowest earlier value (percentage points) is a spike
SPIKE_POINTS = 1.0
CRITERION = (f"lowest mean final validation error over the tuning seeds (ties: lower mean best validation error); "
             f"candidates whose validation error spiked (rose > {SPIKE_POINTS:g} points above its lowest earlier "
             f"value) rank after the others")


class SelectionError(RuntimeError):
    pass


def tuning_results(specs: list[str]) -> pd.DataFrame:
    """One row per tuning run: its candidate's values, status and errors (summaries checked)."""
    rows = []
    for spec, m, s in ended_runs(specs):
        rows.append({"study": spec["study"], "regularizer": m["regularizer"], "run": m["run_id"], "seed": m["seed"],
                     "candidate": tuple(m["candidate"].items()),
                     **{short_key(k): v for k, v in m["candidate"].items()},
                     "status": s["status"], "final_val_error": s["final_val_error"],
                     "best_val_error": s["best_val_error"], "largest_val_rise": s.get("largest_val_rise"),
                     "test_error": s["test_error"], "updates": s["updates"],
                     "run_dir": m["run_dir"]})
    return pd.DataFrame(rows)


def select(results: pd.DataFrame, study: str) -> dict[str, Any]:
    """The selection (what selected.yaml holds) from `tuning_results`."""
    chosen: dict[str, Any] = {}
    for reg, runs in results.groupby("regularizer", sort=False):
        candidates = []
        for order, (candidate, seeds) in enumerate(runs.groupby("candidate", sort=False)):
            ok = bool((seeds["status"] == Status.COMPLETED.value).all())
            if ok and seeds["final_val_error"].isna().any():
                raise SelectionError(f"study {study}: tuning runs of {reg} have no validation error (the dataset has "
                                     "no validation split to tune on)")
            spiked = bool((seeds["largest_val_rise"].fillna(0) > SPIKE_POINTS).any())
            candidates.append({"values": dict(candidate), "order": order, "eligible": ok, "spiked": spiked,
                               "mean_val_error": float(seeds["final_val_error"].mean()) if ok else None,
                               "mean_best_val_error": float(seeds["best_val_error"].mean()) if ok else None,
                               "seeds": [int(s) for s in seeds["seed"]], "statuses": list(seeds["status"])})
        eligible = [c for c in candidates if c["eligible"]]
        if not eligible:
            statuses = pd.Series([s for c in candidates for s in c["statuses"]]).value_counts()
            raise SelectionError(f"study {study}: every tuning candidate of {reg} diverged or failed to learn "
                                 f"({len(candidates)} candidates; runs: "
                                 f"{', '.join(f'{n} {s}' for s, n in statuses.items())}); widen its tune.grid")
        best = min(eligible, key=lambda c: (c["spiked"], c["mean_val_error"], c["mean_best_val_error"], c["order"]))
        chosen[reg] = {
            "selected": dict(best["values"]),  # a copy: YAML would write shared objects as anchors
            "overrides": [f"{k}={hydra_value(v)}" for k, v in best["values"].items()],
            "mean_val_error": best["mean_val_error"],
            "candidates": [{"values": dict(c["values"]),
                            **{k: c[k] for k in ("mean_val_error", "spiked", "seeds", "statuses")}}
                           for c in candidates],
        }
    return {"study": study, "criterion": CRITERION, "regularizers": chosen}


def describe_selection(selection: dict[str, Any]) -> str:
    """`l2: lr 0.1, l2_weight 0.0001; max_norm: lr 0.1, max_norm_radius 3.0`."""
    return "; ".join(f"{reg}: {describe_values(sel['selected'])}" for reg, sel in selection.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dropreg.select", description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="+", help="the study's tuning pack specs")
    parser.add_argument("--study", required=True)
    parser.add_argument("--selected", required=True, help="output: selected.yaml")
    parser.add_argument("--table", required=True, help="output: tuning.csv")
    args = parser.parse_args(argv)
    try:
        results = tuning_results(args.specs)
        selection = select(results, args.study)
        picks = {(reg, tuple(sel["selected"].items())) for reg, sel in selection["regularizers"].items()}
        table = results.assign(**{CHOSEN: [(r, c) in picks for r, c in zip(results["regularizer"], results["candidate"])]})
        with atomic_path(args.table) as tmp:
            table.drop(columns="candidate").to_csv(tmp, index=False)
        write_text(args.selected, "# written by dropreg.select; the study's runs train with `overrides`\n"
                   + yaml.safe_dump(selection, sort_keys=False))
    except (SpecError, RunFileError, SelectionError, DiskFull) as exc:
        print(f"dropreg.select: error: {exc}", file=sys.stderr)
        return 1
    print(f"dropreg.select: {args.selected}: {describe_selection(selection['regularizers'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

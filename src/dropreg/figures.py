"""Figures (PNG + PDF, paper-sized) and their captions, drawn from a study's results only.

    python -m dropreg.figures KIND --results results/<preset>/<study>.csv --out figures/<preset>/<study>/KIND

KIND: table9 (+ .md, .tex), table9_ci, learning_curves, weight_histograms, dropout_rate, dataset_size,
lambda_sweep, notmnist_table (+ .md, .tex), and tuning (--results results/<preset>/<study>/tuning.csv).

Every figure also writes `<out>.caption.rst`, the caption the report shows: what the figure shows
and what actually ran (dataset, model, budget, seeds, the values tuning selected), read from the
runs' own configs. Methods carry the paper's labels; the paper's values are drawn beside ours
wherever the paper has them; error bars appear only where there are several seeds, and say so.
Runs that diverged or failed to learn are left out of means and curves and counted in the caption.
Nothing here trains.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable

import pandas as pd

from .figure_kinds import FIGURE_KINDS
from .plots.common import FigureInputError, NothingToDraw, nothing_to_draw, read_results
from .runfiles import RunFileError

__all__ = ["FigureInputError", "main", "plot_function", "read_results"]


def plot_function(kind: str) -> Callable[[pd.DataFrame, str, str], None]:
    """The function that draws `kind`, where the registry says it is ("module:function")."""
    module, name = FIGURE_KINDS[kind].plot.split(":")
    return getattr(importlib.import_module(module), name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dropreg.figures", description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted(FIGURE_KINDS))
    parser.add_argument("--results", required=True, help="results/<preset>/<study>.csv (tuning: <study>/tuning.csv)")
    parser.add_argument("--out", required=True, help="output path without extension")
    args = parser.parse_args(argv)
    try:
        frame = read_results(args.results)
        try:
            plot_function(args.kind)(frame, args.out, args.results)
        except NothingToDraw as nothing:
            nothing_to_draw(frame, args.out, args.results, str(nothing))
    except (FigureInputError, RunFileError, OSError, pd.errors.ParserError) as exc:
        print(f"dropreg.figures: error: {exc}", file=sys.stderr)
        return 1
    print(f"dropreg.figures: {args.out}.* ({args.kind})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

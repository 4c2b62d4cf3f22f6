"""Figures (PNG + PDF, paper-sized, seaborn) drawn from a study's results table and run dirs only.

    python -m dropreg.figures KIND --results results/<preset>/<study>.csv --out figures/<preset>/<study>/KIND
        [--caption TEXT]

KIND: table9 (also .md, .tex), learning_curves, weight_histograms, dropout_rate, dataset_size,
lambda_sweep, notmnist_table (also .md, .tex). Nothing here trains; diverged runs are left out of
means and curves and counted in the titles and tables.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .atomic import atomic_path  # noqa: E402
from .tables import (TABLE9_ORDER, completed, notmnist_table, table9, table9_display,  # noqa: E402
                     write_latex, write_markdown)

WIDTH = 3.4  # inches: one column of a two-column paper
sns.set_theme(context="paper", style="whitegrid", font_scale=0.9)


class FigureInputError(ValueError):
    """A results table that lacks what a figure needs (names the file and the column)."""


def _save(fig: plt.Figure, out: str) -> None:
    """out.png and out.pdf, each written to a temporary name first."""
    for ext in ("png", "pdf"):
        with atomic_path(f"{out}.{ext}") as tmp:
            fig.savefig(tmp, format=ext, dpi=200, bbox_inches="tight")
    plt.close(fig)


def _need(frame: pd.DataFrame, column: str, source: str) -> None:
    if column not in frame:
        raise FigureInputError(f"{source}: column {column!r} missing (needed by this figure; "
                               f"columns are {list(frame.columns)})")


def _diverged_note(frame: pd.DataFrame) -> str:
    n = int((frame["status"] == "diverged").sum())
    return f" ({n} diverged run{'s' if n != 1 else ''} left out)" if n else ""


def _order(frame: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(frame["regularizer"]))
    return [r for r in TABLE9_ORDER if r in present] + [r for r in present if r not in TABLE9_ORDER]


# ----------------------------------------------------------------------------- figures
def plot_table9(frame: pd.DataFrame, out: str, caption: str, source: str) -> None:
    table = table9(frame)
    fig, ax = plt.subplots(figsize=(WIDTH * 1.6, 0.35 * len(table) + 1.0))
    y = np.arange(len(table))
    ax.errorbar(table["ours_mean"], y, xerr=table["ours_sd"].fillna(0), fmt="o", color="C0", capsize=3,
                label="ours (mean ± sd over seeds)")
    has_paper = table["paper"].notna()
    ax.scatter(table.loc[has_paper, "paper"], y[has_paper.to_numpy()], marker="D", color="black", zorder=3,
               label="paper (Table 9)")
    for yi, r in zip(y, table.itertuples()):
        if not pd.isna(r.difference):
            ax.annotate(f"{r.difference:+.2f}", (max(r.ours_mean, r.paper), yi), xytext=(6, -3),
                        textcoords="offset points", fontsize=7)
    ax.set_yticks(y, table["method"])
    ax.invert_yaxis()
    ax.set_xlabel("test error (%)")
    ax.set_title("MNIST, Table 9: paper vs ours" + _diverged_note(frame), fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.6 / len(table)), ncol=2)
    lo, hi = ax.get_xlim()
    ax.set_xlim(lo, hi + 0.12 * (hi - lo))  # room for the differences
    _save(fig, out)
    display = table9_display(table)
    write_markdown(display, f"{out}.md", caption)
    write_latex(display, f"{out}.tex", caption)


def plot_learning_curves(frame: pd.DataFrame, out: str, caption: str, source: str) -> None:
    curves = []
    for r in completed(frame).itertuples():
        metrics = pd.read_csv(Path(r.run_dir) / "metrics.csv")
        for split in ("val", "test"):
            if f"{split}/error" in metrics:
                curves.append(pd.DataFrame({"update": metrics["update"], "error": metrics[f"{split}/error"],
                                            "split": split, "regularizer": r.regularizer, "seed": r.seed}))
    if not curves:
        raise FigureInputError(f"{source}: no completed run with a metrics.csv")
    data = pd.concat(curves, ignore_index=True)
    fig, ax = plt.subplots(figsize=(WIDTH * 1.6, WIDTH))
    sns.lineplot(data=data, x="update", y="error", hue="regularizer", hue_order=_order(data), style="split",
                 errorbar="sd", ax=ax)
    ax.set_yscale("log")
    ax.set_xlabel("weight updates")
    ax.set_ylabel("classification error (%)")
    ax.set_title("Error during training (mean ± sd over seeds)" + _diverged_note(frame), fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    _save(fig, out)


def plot_weight_histograms(frame: pd.DataFrame, out: str, caption: str, source: str) -> None:
    import torch

    weights = []
    for reg, runs in completed(frame).groupby("regularizer", sort=False):
        run = runs.sort_values("seed").iloc[0]
        state = torch.load(Path(run.run_dir) / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
        w = state["model.hidden_layers.0.weight"].flatten().numpy()
        weights.append(pd.DataFrame({"weight": w, "regularizer": reg}))
    if not weights:
        raise FigureInputError(f"{source}: no completed run with a last.ckpt")
    data = pd.concat(weights, ignore_index=True)
    order = _order(data)
    grid = sns.displot(data=data, x="weight", col="regularizer", col_order=order, col_wrap=4, bins=80,
                       height=1.6, aspect=1.2, facet_kws={"sharey": False}, element="step")
    for ax, reg in zip(grid.axes.flat, order):
        w = data.loc[data["regularizer"] == reg, "weight"].to_numpy()
        ax.set_title(f"{reg}\n|w|<1e-3: {np.mean(np.abs(w) < 1e-3):.1%}, sd {w.std():.3f}", fontsize=7)
    grid.set_axis_labels("first-layer weight", "count")
    grid.figure.suptitle("First-layer weights (one seed each)", fontsize=9, y=1.02)
    _save(grid.figure, out)


def _sweep_plot(frame: pd.DataFrame, out: str, source: str, x: str, xlabel: str, title: str,
                log_x: bool, hue: str | None = "regularizer", style: str | None = None,
                train_error: bool = False) -> None:
    _need(frame, x, source)
    data = completed(frame).copy()
    fig, ax = plt.subplots(figsize=(WIDTH, WIDTH * 0.8))
    if train_error:
        long = data.melt(id_vars=[x], value_vars=["test_error", "final_train_error"], var_name="error on",
                         value_name="error")
        long["error on"] = long["error on"].map({"test_error": "test", "final_train_error": "training (dropout on)"})
        sns.lineplot(data=long, x=x, y="error", hue="error on", marker="o", errorbar="sd", ax=ax)
    else:
        sns.lineplot(data=data, x=x, y="test_error", hue=hue, style=style, marker="o", errorbar="sd", ax=ax)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("classification error (%)")
    ax.set_title(title + _diverged_note(frame), fontsize=9)
    _save(fig, out)


def plot_dropout_rate(frame, out, caption, source) -> None:
    _sweep_plot(frame, out, source, "p", "retain probability p (hidden units)",
                "Dropout rate, n fixed (cf. paper Fig. 9a)", log_x=False, train_error=True)


def plot_dataset_size(frame, out, caption, source) -> None:
    _sweep_plot(frame, out, source, "n", "training examples", "Dataset size (cf. paper Fig. 10)", log_x=True)


def plot_lambda_sweep(frame, out, caption, source) -> None:
    _need(frame, "bias", source)
    frame = frame.assign(biases=frame["bias"].map({True: "penalized", False: "not penalized"}))
    _sweep_plot(frame, out, source, "lam", "λ", "Penalty strength", log_x=True, style="biases")


def plot_notmnist_table(frame: pd.DataFrame, out: str, caption: str, source: str) -> None:
    _need(frame, "n", source)
    table = notmnist_table(frame)
    long = table.melt(id_vars="regularizer", var_name="training set", value_name="test error (%)")
    fig, ax = plt.subplots(figsize=(WIDTH, WIDTH * 0.8))
    sns.barplot(data=long, x="regularizer", y="test error (%)", hue="training set", ax=ax)
    ax.tick_params(axis="x", rotation=20)
    ax.set_title("notMNIST exercise: L2 vs dropout" + _diverged_note(frame), fontsize=9)
    _save(fig, out)
    write_markdown(table, f"{out}.md", caption)
    write_latex(table, f"{out}.tex", caption)


FIGURES: dict[str, Callable[[pd.DataFrame, str, str, str], None]] = {
    "table9": plot_table9,
    "learning_curves": plot_learning_curves,
    "weight_histograms": plot_weight_histograms,
    "dropout_rate": plot_dropout_rate,
    "dataset_size": plot_dataset_size,
    "lambda_sweep": plot_lambda_sweep,
    "notmnist_table": plot_notmnist_table,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted(FIGURES))
    parser.add_argument("--results", required=True, help="results/<preset>/<study>.csv")
    parser.add_argument("--out", required=True, help="output path without extension")
    parser.add_argument("--caption", default="")
    args = parser.parse_args(argv)
    frame = pd.read_csv(args.results)  # outputs are written via atomic_path, which creates their folder
    FIGURES[args.kind](frame, args.out, args.caption, args.results)
    print(f"dropreg.figures: {args.out}.* ({args.kind})")


if __name__ == "__main__":
    main()

"""Test error along a sweep axis, beside the paper's figure where it has one: dropout rate (Fig. 9a),
dataset size (Fig. 10), the L1/L2 penalty weight, and the notMNIST exercise's table."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from .. import paper
from ..tables import is_true, method_label, notmnist_table, write_latex, write_markdown
from . import common
from .common import COLORS, PAPER_STYLE, WIDTH, Runs, display_order, n_note, sweep_axes, with_runs


def _mean_sd(done: pd.DataFrame, by: list[str], y: str) -> pd.DataFrame:
    return done.groupby(by, dropna=False)[y].agg(["mean", "std", "count"]).reset_index()


def _line(ax, stats: pd.DataFrame, x: str, label: str, color, marker: str = "o", dodge: float = 1.0,
          linestyle: str = "-") -> None:
    xs = stats[x].to_numpy(dtype=float) * dodge
    if (stats["count"] > 1).any():
        ax.errorbar(xs, stats["mean"], yerr=stats["std"].fillna(0), marker=marker, color=color, capsize=2,
                    linestyle=linestyle, label=label, markersize=4, linewidth=1.2)
    else:
        ax.plot(xs, stats["mean"], marker=marker, color=color, linestyle=linestyle, label=label, markersize=4,
                linewidth=1.2)


def _bars_note(done: pd.DataFrame, by: list[str]) -> str:
    n = done.groupby(by, dropna=False).size()
    return f"error bars: ± sd over seeds ({n_note(n)})" if n.max() > 1 else "one seed per point, no error bars"


def plot_dropout_rate(frame: pd.DataFrame, out: str, source: str) -> None:
    (p,) = sweep_axes(frame, "dropout_rate", source)
    runs = Runs.read(frame, source)
    done = with_runs(frame, "the dropout-rate figure")
    if runs.paper_scale:
        fig, ax = plt.subplots(figsize=(WIDTH, WIDTH * 0.8))
        ours_ax = paper_ax = ax
    else:  # our errors and the paper's are on different scales: side by side, same p axis
        fig, (ours_ax, paper_ax) = plt.subplots(1, 2, figsize=(WIDTH * 1.9, WIDTH * 0.8), sharex=True)
        paper_ax.set_title("paper, Fig. 9a (MNIST, 784-2048-2048-2048-10)", fontsize=7)
        ours_ax.set_title(f"ours — {runs.short}", fontsize=7)
    _line(ours_ax, _mean_sd(done, [p], "test_error"), p, "ours: test", "C0")
    _line(ours_ax, _mean_sd(done, [p], "final_train_error"), p, "ours: training (dropout on)", "C1", marker="s")
    paper_ax.plot(paper.FIG9A_P, paper.FIG9A_TEST_ERROR, label="paper Fig. 9a: test", **PAPER_STYLE)
    paper_ax.plot(paper.FIG9A_P, paper.FIG9A_TRAIN_ERROR, label="paper Fig. 9a: training",
                  **{**PAPER_STYLE, "marker": "s", "color": "gray"})
    for ax in {ours_ax, paper_ax}:
        ax.set_xlabel("retain probability p of hidden units")
        ax.set_ylabel("classification error (%)")
        ax.legend(fontsize=6)
    if runs.paper_scale:
        ax.set_title(f"Dropout rate, n fixed — {runs.short}", fontsize=7)
    caption = runs.caption("Test and training error against the retain probability p of the hidden units, beside "
                           f"the paper's Fig. 9a (784-2048-2048-2048-10 on MNIST); {_bars_note(done, [p])}.")
    common.save(fig, out, caption)


def plot_dataset_size(frame: pd.DataFrame, out: str, source: str) -> None:
    (n,) = sweep_axes(frame, "dataset_size", source)
    runs = Runs.read(frame, source)
    done = with_runs(frame, "the dataset-size figure")
    fig, ax = plt.subplots(figsize=(WIDTH, WIDTH * 0.8))
    for reg, group in done.groupby("regularizer", sort=False):
        _line(ax, _mean_sd(group, [n], "test_error"), n, f"ours: {method_label(reg).replace(' (ours)', '')}",
              COLORS.get(reg, "C0"))
    ax.plot(paper.FIG10_N, paper.FIG10_WITHOUT_DROPOUT, label="paper Fig. 10: without dropout", **PAPER_STYLE)
    ax.plot(paper.FIG10_N, paper.FIG10_WITH_DROPOUT, label="paper Fig. 10: with dropout",
            **{**PAPER_STYLE, "marker": "o", "color": "gray"})
    ax.set_xscale("log")
    ax.set_yscale("log")  # both span decades, and the paper's Fig. 10 is drawn this way
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(
        lambda v, _: f"{v:g}" if str(f"{v:g}")[0] in "25" else ""))
    ax.set_xlabel("training examples N")
    ax.set_ylabel("test error (%)")
    ax.set_title(f"Dataset size — {runs.short}", fontsize=7)
    ax.legend(fontsize=6)
    caption = runs.caption("Test error against the number of training examples, with and without dropout (cf. the "
                           f"paper's Fig. 10 on MNIST, dashed); {_bars_note(done, ['regularizer', n])}.")
    common.save(fig, out, caption)


def plot_lambda_sweep(frame: pd.DataFrame, out: str, source: str) -> None:
    lam, bias = sweep_axes(frame, "lambda_sweep", source)
    runs = Runs.read(frame, source)
    done = with_runs(frame, "the penalty sweep").copy()
    done["biases"] = done[bias].map(lambda v: "biases penalized" if is_true(v) else "biases not penalized")
    regs = display_order(done["regularizer"])
    fig, axes = plt.subplots(1, len(regs), figsize=(WIDTH * 0.9 * len(regs), WIDTH * 0.8), sharey=True, squeeze=False)
    for ax, reg in zip(axes[0], regs):
        group = done[done["regularizer"] == reg]
        for i, (biases, g) in enumerate(group.groupby("biases", sort=True)):
            # the two lines often coincide (bias penalties barely matter): dodge one a little in λ
            _line(ax, _mean_sd(g, [lam], "test_error"), lam, biases, COLORS.get(reg, "C0"),
                  marker="os"[i % 2], dodge=1.12 ** i, linestyle="-:"[i % 2])
        ax.set_xscale("log")
        ax.set_xlabel("penalty weight λ")
        ax.set_title(method_label(reg), fontsize=8)
        ax.legend(fontsize=6)
    axes[0, 0].set_ylabel("test error (%)")
    caption = runs.caption("Test error against the penalty weight λ of L1 and L2, with the biases penalized or not "
                           "(one line dodged by 12 % in λ where they coincide); "
                           f"{_bars_note(done, ['regularizer', lam, bias])}.")
    common.save(fig, out, caption)


def plot_notmnist_table(frame: pd.DataFrame, out: str, source: str) -> None:
    (n,) = sweep_axes(frame, "notmnist_table", source)
    runs = Runs.read(frame, source)
    with_runs(frame, "the L2-vs-dropout table")
    table = notmnist_table(frame, n)
    sizes = " and on ".join("all training examples" if pd.isna(v) else f"the first {int(v):,}"
                         for v in frame[n].drop_duplicates())  # the sizes that ran, not the exercise's
    long = table.melt(id_vars="Method", var_name="training set", value_name="test error (%)")
    fig, ax = plt.subplots(figsize=(WIDTH * 1.2, WIDTH * 0.85))
    sns.barplot(data=long, x="Method", y="test error (%)", hue="training set", ax=ax)
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=6, title_fontsize=6)
    ax.tick_params(axis="x", rotation=25, labelsize=6)
    ax.set_xlabel("")
    dataset = runs.dataset
    ax.set_title(f"L2 vs dropout, the notMNIST exercise's protocol, on {dataset}", fontsize=7)
    caption = runs.caption(f"The notMNIST exercise (784-1024-10, SGD 0.5, batch 128, β·l2_loss): test error per "
                           f"method on {sizes}, here on {dataset}.")
    common.save(fig, out, caption)
    write_markdown(table, f"{out}.md", caption)
    write_latex(table, f"{out}.tex", caption)

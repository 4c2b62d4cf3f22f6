"""Table 9 as figures: the paper's test errors beside ours (with its .md and .tex), and our rows'
confidence intervals with tests between neighbouring rows."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..tables import dropout_gain, table9, table9_display, write_latex, write_markdown
from . import common
from .common import COLORS, WIDTH, Runs, n_note, sweep_axes


def plot_table9(frame: pd.DataFrame, out: str, source: str) -> None:
    axes = sweep_axes(frame, "table9", source)
    runs = Runs.read(frame, source)
    table = table9(frame, axes)
    y = np.arange(len(table))
    several = table["n"] > 1
    labels = [m + (f"\n[{s}]" if s else "") + ("\n(max-norm never binds: not ranked)" if unbound else "")
              for m, s, unbound in zip(table["method"], table["selected"], table["max_norm_never_binds"])]
    ours_label = (f"ours: mean ± sd over seeds ({n_note(table['n'])})" if several.any()
                  else "ours (one seed each, no error bars)")
    if runs.paper_scale:
        fig, ax = plt.subplots(1, 1, figsize=(WIDTH * 1.7, 0.42 * len(table) + 1.2))
        panels = [(ax, True, True)]
    else:  # errors on a small dataset are not the paper's scale: two panels, one row each
        fig, (left, right) = plt.subplots(1, 2, figsize=(WIDTH * 2.2, 0.42 * len(table) + 1.2), sharey=True,
                                          gridspec_kw={"width_ratios": [1, 1.4]})
        panels = [(left, True, False), (right, False, True)]
    for ax, show_paper, show_ours in panels:
        if show_paper:
            has = table["paper"].notna().to_numpy()
            ax.scatter(table.loc[has, "paper"], y[has], marker="D", color="black", zorder=3,
                       label="paper, Table 9 (MNIST, 1M updates)")
            ax.set_xlabel("paper test error (%)" if not show_ours else "test error (%)")
        if show_ours:
            for yi, r in zip(y, table.itertuples()):
                color = COLORS.get(r.regularizer, "C0")
                if r.n > 1:
                    ax.errorbar(r.ours_mean, yi, xerr=r.ours_sd, fmt="o", color=color, capsize=3)
                elif r.n == 1:
                    ax.plot(r.ours_mean, yi, "o", color=color)
                else:
                    ax.annotate("no completed run", (0, yi), xycoords=("axes fraction", "data"), fontsize=7)
                if runs.paper_scale and not pd.isna(r.difference):
                    ax.annotate(f"{r.difference:+.2f}", (max(r.ours_mean, r.paper), yi), xytext=(6, -3),
                                textcoords="offset points", fontsize=7)
            ax.plot([], [], "o", color="gray", label=ours_label)
            ax.set_xlabel("test error (%)" if runs.paper_scale else f"our test error (%) — {runs.short}")
        ax.legend(fontsize=6.5, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    axes_list = [p[0] for p in panels]
    axes_list[0].set_yticks(y, labels, fontsize=7)
    axes_list[0].invert_yaxis()
    gain = dropout_gain(table)
    what = ("Table 9 reproduced: MNIST test error by regularizer, the paper's value beside ours with the "
            "difference." if runs.paper_scale else
            "Table 9 in miniature: the paper's test errors (left; full MNIST, 1M updates) and ours (right). With "
            "less data, a smaller net or a shorter budget than the paper's, absolute errors are not comparable; "
            "compare ranks and the dropout gain.")
    caption = runs.caption(what) + (f" Dropout gain, {gain}." if gain else "")
    common.save(fig, out, caption)
    display = table9_display(table, runs.paper_scale)
    write_markdown(display, f"{out}.md", caption)
    write_latex(display, f"{out}.tex", caption)


def plot_table9_ci(frame: pd.DataFrame, out: str, source: str) -> None:
    """Mean ± 95 % CI per row, and Welch's t-test between neighbouring rows: which of the paper's
    small gaps can this many seeds resolve?"""
    axes = sweep_axes(frame, "table9_ci", source)
    runs = Runs.read(frame, source)
    table = table9(frame, axes)
    y = np.arange(len(table))
    fig, ax = plt.subplots(figsize=(WIDTH * 1.9, 0.45 * len(table) + 1.2))
    for yi, r in zip(y, table.itertuples()):
        color = COLORS.get(r.regularizer, "C0")
        if r.n >= 2:
            ax.errorbar(r.ours_mean, yi, xerr=r.ours_ci, fmt="o", color=color, capsize=3)
        elif r.n == 1:
            ax.plot(r.ours_mean, yi, "o", color=color, mfc="white")
    lo, hi = ax.get_xlim()
    for i in range(1, len(table)):
        p, prev, cur = table["p_vs_previous"].iloc[i], table.iloc[i - 1], table.iloc[i]
        text = "n < 2: no test" if pd.isna(p) else f"p = {p:.2g}" + (" *" if p < 0.05 else " (n.s.)")
        if not pd.isna(prev["paper"]) and not pd.isna(cur["paper"]):
            text += f"; paper gap {cur['paper'] - prev['paper']:+.2f}"
        ax.annotate(text, (1.01, i - 0.5), xycoords=("axes fraction", "data"), fontsize=6.5, va="center",
                    color="black" if not pd.isna(p) and p < 0.05 else "gray")
    ax.set_xlim(lo, hi)
    ax.set_yticks(y, table["method"], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"our test error (%), mean ± 95 % CI ({n_note(table['n'])}) — {runs.short}")
    ax.set_title(f"95 % CIs and Welch's t-test between neighbouring rows — {runs.short}", fontsize=7)
    significant = int((table["p_vs_previous"] < 0.05).sum())
    tested = int(table["p_vs_previous"].notna().sum())
    caption = runs.caption(
        f"Our Table 9 rows with 95 % confidence intervals of the mean over seeds (Student's t), and for each pair of "
        f"neighbouring rows the p-value of Welch's t-test for different means; {significant} of {tested} "
        "neighbouring differences are significant at 5 %. The paper's neighbouring rows differ by 0.02–0.30 points.")
    common.save(fig, out, caption)

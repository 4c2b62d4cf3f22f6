"""The tuning stage: validation error against each tuned value, per method."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from ..status import Status
from ..tables import CHOSEN, extra_columns, method_label
from . import common
from .common import Runs, display_order, need, stale_table


def plot_tuning(frame: pd.DataFrame, out: str, source: str) -> None:
    """Validation error against each tuned value, per method; the selected candidate starred."""
    need(frame, "final_val_error", source)
    if CHOSEN not in frame:
        raise stale_table(source, f"lacks column {CHOSEN} (written by an older dropreg.select)")
    runs = Runs.read(frame, source)
    keys = extra_columns(frame)  # the tuned keys (tuning.csv's columns that are not run columns)
    regs = display_order(frame["regularizer"])
    cols = min(4, len(regs))
    rows = -(-len(regs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols + 0.4, 1.7 * rows + 0.5), squeeze=False)
    for ax in axes.flat[len(regs):]:
        ax.set_visible(False)
    for ax, reg in zip(axes.flat, regs):
        group = frame[frame["regularizer"] == reg]
        tuned = [k for k in keys if group[k].notna().any()]
        ax.set_title(method_label(reg), fontsize=6.5)
        ax.tick_params(labelsize=5)
        if not tuned:  # a grid without `all`, and none of its own: one candidate, nothing to plot against
            ax.text(0.5, 0.5, "not tuned", ha="center", va="center", fontsize=6, transform=ax.transAxes)
            continue
        x, others = tuned[0], tuned[1:]  # x axis; one line per combination of the other tuned values
        ok = group[group["status"] == Status.COMPLETED.value]
        mean = ok.groupby(tuned, dropna=False)["final_val_error"].mean().reset_index()
        series = [((), mean)] if not others else list(mean.groupby(others, sort=True, dropna=False))
        for values, m in series:
            values = values if isinstance(values, tuple) else (values,)
            label = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in zip(others, values))
            m = m.sort_values(x)
            ax.plot(m[x], m["final_val_error"], marker="o", markersize=3, linewidth=1, label=label or None)
        chosen = group[group[CHOSEN]].iloc[0] if group[CHOSEN].any() else None
        if chosen is not None:
            ax.plot(chosen[x], ok[(ok[tuned] == chosen[tuned]).all(axis=1)]["final_val_error"].mean(), marker="*",
                    markersize=11, color="gold", markeredgecolor="black", linestyle="none", zorder=4)
        bad = group[group["status"] != Status.COMPLETED.value]
        if len(bad):
            top = ax.get_ylim()[1]
            ax.plot(bad[x], [top] * len(bad), marker="x", color="red", linestyle="none")
        numeric = pd.api.types.is_numeric_dtype(group[x])
        if numeric and (group[x] > 0).all() and group[x].max() / group[x].min() >= 20:
            ax.set_xscale("log")
        ax.set_xlabel(x, fontsize=6)
        if others:
            ax.legend(fontsize=4.5)
    for ax in axes[:, 0]:
        ax.set_ylabel("validation error (%)", fontsize=6)
    fig.suptitle(f"Tuning on the validation split — {runs.short} per candidate", fontsize=8)
    fig.tight_layout()
    caption = runs.caption("Tuning on the validation split: final validation error (mean over tuning seeds) against "
                           "each tuned value, per method; the selected candidate is starred, candidates that diverged "
                           "or failed to learn are red crosses.")
    common.save(fig, out, caption)

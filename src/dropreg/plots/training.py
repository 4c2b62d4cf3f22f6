"""What training did, per method: learning curves, and the final first-layer weights."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .. import paper
from ..rundir import load_metrics
from ..runfiles import Checkpoint, load_summary
from ..tables import method_label
from . import common
from .common import COLORS, WIDTH, Runs, display_order, warn, with_runs


def plot_learning_curves(frame: pd.DataFrame, out: str, source: str) -> None:
    runs = Runs.read(frame, source)
    done = with_runs(frame, "learning curves")
    curves, kinds = [], []
    for r in done.itertuples():
        m = load_metrics(r.run_dir, warn)
        held_out = "val/error" if "val/error" in m else "test/error"
        kinds.append(held_out)
        curves.append(pd.DataFrame({"update": m["update"], "training (dropout on)": m["train/error"],
                                    "held out": m[held_out], "method": method_label(r.regularizer),
                                    "regularizer": r.regularizer, "seed": r.seed}))
    data = pd.concat(curves, ignore_index=True)
    held = {"val/error": "validation", "test/error": "test"}.get(kinds[0]) if len(set(kinds)) == 1 else \
        "validation (test where a run has none)"
    order = display_order(data["regularizer"])
    palette = {method_label(r): COLORS.get(r, "gray") for r in order}
    hue_order = [method_label(r) for r in order]
    several = done.groupby("regularizer").size().max() > 1
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH * 2.2, WIDTH * 0.95))
    late = data[data["update"] >= data["update"].max() * 0.2]  # past the first fifth: what the eye compares
    for ax, column, title in ((axes[0], "training (dropout on)", "training error (dropout on)"),
                              (axes[1], "held out", f"{held} error")):
        sns.lineplot(data=data, x="update", y=column, hue="method", hue_order=hue_order, palette=palette,
                     errorbar="sd" if several else None, ax=ax, legend=ax is axes[1], linewidth=1.1)
        # linear axes: training error reaches 0, which a log axis cannot show, and the held-out curves
        # differ by fractions of a point; the first evaluations (far higher) are cut off, not the end
        ax.set_ylim(0, float(late[column].quantile(0.98)) * 1.25)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("weight updates")
        ax.set_ylabel("classification error (%)")
    if runs.paper_scale:
        for lo, hi, label in ((*paper.FIG4_WITHOUT_DROPOUT, "paper Fig. 4, no dropout"),
                              (*paper.FIG4_WITH_DROPOUT, "paper Fig. 4, dropout")):
            axes[1].axhspan(lo, hi, color="gray", alpha=0.15)
            axes[1].annotate(label, (0.02, hi), xycoords=("axes fraction", "data"), fontsize=6)
    axes[1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.suptitle(f"Learning curves — {runs.short}", fontsize=8)
    band = "; bands: ± sd over seeds" if several else "; one seed per method, so no bands"
    caption = runs.caption(f"Error during training, per method (mean over seeds{band}; the paper's Fig. 4 band "
                           f"where the scale is the paper's). Left: training error with dropout active; right: "
                           f"{held} error.")
    common.save(fig, out, caption)


def _first_layer(run_dir: str) -> np.ndarray:
    state = Checkpoint.load(Path(run_dir) / "last.ckpt").state_dict
    return state["net.layers.0.weight"][0].numpy()  # [in, out]: unit j's incoming weights are column j


def plot_weight_histograms(frame: pd.DataFrame, out: str, source: str) -> None:
    runs = Runs.read(frame, source)
    done = with_runs(frame, "weight histograms")
    order = display_order(done["regularizer"])
    picked = {reg: done[done["regularizer"] == reg].sort_values("seed").iloc[0] for reg in order}
    weights = {reg: _first_layer(r["run_dir"]) for reg, r in picked.items()}
    configs = {reg: load_summary(Path(r["run_dir"]) / "summary.json")["config"] for reg, r in picked.items()}
    radii = {reg: c["regularizer"]["max_norm"]["radius"] for reg, c in configs.items()}
    norms = {reg: np.sqrt((w ** 2).sum(axis=0)) for reg, w in weights.items()}
    limit = float(np.percentile(np.abs(np.concatenate([w.ravel() for w in weights.values()])), 99.9))
    top_norm = 1.05 * max([n.max() for n in norms.values()] + [r for r in radii.values() if r is not None])
    fig, axes = plt.subplots(2, len(order), figsize=(1.45 * len(order) + 0.6, 3.6), squeeze=False, sharex="row")
    value_bins, norm_bins = np.linspace(-limit, limit, 81), np.linspace(0, top_norm, 41)  # shared: comparable
    for col, reg in enumerate(order):
        w, radius, color = weights[reg], radii[reg], COLORS.get(reg, "C0")
        top, bottom = axes[0, col], axes[1, col]
        top.hist(w.ravel(), bins=value_bins, color=color, log=True, histtype="stepfilled")
        top.set_title(f"{method_label(reg)}\n|w| < 1e-3: {np.mean(np.abs(w) < 1e-3):.1%}", fontsize=6)
        top.tick_params(labelsize=5)
        bottom.hist(norms[reg], bins=norm_bins, color=color, histtype="stepfilled")
        if radius is not None:
            bottom.axvline(radius, color="black", linestyle="--", linewidth=1)
            bottom.annotate(f"c = {radius:g}", (radius, 0.9), xycoords=("data", "axes fraction"), fontsize=5,
                            ha="right")
        bottom.set_title(f"max ‖w_j‖ = {norms[reg].max():.2f}", fontsize=6)
        bottom.tick_params(labelsize=5)
    axes[0, 0].set_ylabel("weights (log count)", fontsize=6)
    axes[1, 0].set_ylabel("hidden units", fontsize=6)
    fig.supxlabel("top: first-layer weight values; bottom: norm of each first-layer unit's incoming weights",
                  fontsize=6)
    fig.suptitle(f"Final first-layer weights — {runs.short}", fontsize=8)
    fig.tight_layout()
    caption = runs.caption("Final first-layer weights (one seed per method): their values (top, log count; the "
                           "share of near-zero weights above each panel) and each hidden unit's incoming-weight norm "
                           "(bottom; dashed: the max-norm radius c).")
    common.save(fig, out, caption)

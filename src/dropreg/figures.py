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
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from . import paper  # noqa: E402
from .atomic import atomic_path, write_text  # noqa: E402
from .figure_kinds import FIGURE_KINDS  # noqa: E402
from .rundir import load_metrics, set_aside  # noqa: E402
from .runfiles import Checkpoint, RunFileError, load_summary  # noqa: E402
from .tables import (completed, dropout_gain, is_true, method_label, notmnist_table, sweep_axes,  # noqa: E402
                     table9, table9_display, write_latex, write_markdown)

WIDTH = 3.4  # inches: one column of a two-column paper
sns.set_theme(context="paper", style="whitegrid", font_scale=0.9)
COLORS = dict(zip(paper.TABLE9_ORDER, sns.color_palette("tab10", len(paper.TABLE9_ORDER))))
PAPER_STYLE = dict(color="black", marker="D", linestyle="--", linewidth=1, markersize=4)


class FigureInputError(ValueError):
    """A results table that lacks what a figure needs (names the file and what is missing)."""


# ----------------------------------------------------------------------------- what ran
@dataclass
class Runs:
    """What a study's results say about the runs behind a figure."""

    frame: pd.DataFrame
    config: dict  # the first run's resolved config
    source: str

    @classmethod
    def read(cls, frame: pd.DataFrame, source: str) -> "Runs":
        if frame.empty:
            raise FigureInputError(f"{source}: no runs")
        return cls(frame, load_summary(Path(frame["run_dir"].iloc[0]) / "summary.json")["config"], source)

    @property
    def paper_scale(self) -> bool:
        return paper.is_paper_scale(self.config)

    @property
    def model(self) -> str:
        c = self.config
        widths = "-".join(str(w) for w in [c["dataset"]["input_dim"], *c["model"]["hidden"], c["dataset"]["num_classes"]])
        return f"{widths} {c['model']['activation']}"

    @property
    def data(self) -> str:
        d = self.config["dataset"]
        try:
            counts = json.loads((Path(d["data_dir"]) / f"{d['name']}.manifest.json").read_text())["counts"]
            n = counts["train"] + (0 if d["use_validation"] else counts["val"])
            what = f"{n:,} training images" + ("" if d["use_validation"] else ", validation merged in")
        except (OSError, ValueError, KeyError):
            what = "train split" if d["use_validation"] else "train + validation"
        return f"{d['name']} ({what})"

    @property
    def budget(self) -> str:
        o = self.config["optim"]
        return f"{o['max_updates']:,} updates of batch {o['batch_size']} (optimizer {o['name']})"

    @property
    def short(self) -> str:
        return f"{self.config['dataset']['name']}, {self.model}, {self.config['optim']['max_updates']:,} updates"

    def seeds(self) -> str:
        seeds = sorted(set(int(s) for s in self.frame["seed"]))
        return f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))}"

    def status_note(self) -> str:
        counts = self.frame["status"].value_counts()
        bad = [f"{counts[s]} {s.replace('_', ' ')}" for s in ("diverged", "failed_to_learn") if s in counts]
        return f" Left out of means and curves: {', '.join(bad)} run(s)." if bad else ""

    def caption(self, what: str) -> str:
        text = (f"{what} {self.data}; {self.model} net; {self.budget}; {self.seeds()}; "
                f"{len(self.frame)} runs.{self.status_note()}")
        picks = [(r, s) for r, s in self.frame.drop_duplicates("regularizer")[["regularizer", "selected"]]
                 .itertuples(index=False) if isinstance(s, str) and s] if "selected" in self.frame else []
        if picks:
            text += " Chosen on the validation split first: " + "; ".join(f"{method_label(r)}: {s}" for r, s in picks) + "."
        return text


def _save(fig: plt.Figure, out: str, caption: str) -> None:
    """out.png, out.pdf and out.caption.rst, each written to a temporary name first."""
    for ext in ("png", "pdf"):
        with atomic_path(f"{out}.{ext}") as tmp:
            fig.savefig(tmp, format=ext, dpi=200, bbox_inches="tight")
    plt.close(fig)
    write_text(f"{out}.caption.rst", caption + "\n")


def _warn(line: str) -> None:
    print(f"dropreg.figures: warning: {line}", file=sys.stderr)


# what every results table (summarize's study CSV, select's tuning.csv) has in every row
_RESULT_COLUMNS = ("run", "regularizer", "status", "run_dir")


def read_results(path: str) -> pd.DataFrame:
    """A results table, checked: readable, with its columns, every row complete (a table cut mid-row
    parses with the last fields empty). One that is not is set aside, so Snakemake writes it again."""
    from .status import STATUSES

    problem = None
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise FigureInputError(f"{path}: no such results table; run the pipeline first") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # pandas' parser and empty-data errors
        problem = f"unreadable ({exc.__class__.__name__})"
    else:
        missing = [c for c in _RESULT_COLUMNS if c not in frame]
        bad = frame[~frame["status"].isin(STATUSES) | frame["run_dir"].isna()] if not missing else frame.iloc[:0]
        if missing:
            problem = f"lacks column(s) {', '.join(missing)}"
        elif len(bad):
            problem = f"row {bad.index[0] + 2} is incomplete or has status {bad['status'].iloc[0]!r} (cut short?)"
        elif "test_error" in frame and not pd.api.types.is_numeric_dtype(frame["test_error"]):
            problem = "test_error holds values that are not numbers"
    if problem:
        kept = set_aside(Path(path))
        raise FigureInputError(f"{path}: {problem}; set aside as {kept.name}: rerun the pipeline to write it again")
    return frame


def _need(frame: pd.DataFrame, column: str, source: str) -> None:
    if column not in frame:
        raise FigureInputError(f"{source}: column {column!r} missing (needed by this figure; "
                               f"columns are {list(frame.columns)})")


class NothingToDraw(Exception):
    """No run of the study completed: the figure says so instead of plotting."""


def _with_runs(frame: pd.DataFrame, what: str) -> pd.DataFrame:
    done = completed(frame)
    if done.empty:
        raise NothingToDraw(what)
    return done


def _nothing_to_draw(frame: pd.DataFrame, out: str, source: str, what: str) -> None:
    """The figure of a study none of whose runs completed: what happened to them, in words (and the
    table files of a table figure saying the same, so the job still delivers every output)."""
    counts = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in frame["status"].value_counts().items())
    fig, ax = plt.subplots(figsize=(WIDTH, WIDTH * 0.5))
    ax.axis("off")
    ax.text(0.5, 0.5, f"No run completed ({counts}):\nnothing to draw for {what}.", ha="center", va="center",
            fontsize=8, transform=ax.transAxes)
    try:
        caption = Runs.read(frame, source).caption(f"No run of this study completed, so there is nothing to draw for "
                                                   f"{what}.")
    except (OSError, ValueError, KeyError):
        caption = f"No run of this study completed ({counts}), so there is nothing to draw for {what}."
    _save(fig, out, caption)
    if getattr(FIGURE_KINDS.get(Path(out).name), "table", False):
        note = pd.DataFrame({"Status": [f"no run completed ({counts})"]})
        write_markdown(note, f"{out}.md", caption)
        write_latex(note, f"{out}.tex", caption)


def _order(regs) -> list[str]:
    present = list(dict.fromkeys(regs))
    return [r for r in paper.TABLE9_ORDER if r in present] + [r for r in present if r not in paper.TABLE9_ORDER]


def _n_note(n: pd.Series) -> str:
    lo, hi = int(n.min()), int(n.max())
    return f"n = {lo}" if lo == hi else f"n = {lo}–{hi}"


# ----------------------------------------------------------------------------- Table 9
def plot_table9(frame: pd.DataFrame, out: str, source: str) -> None:
    runs = Runs.read(frame, source)
    table = table9(frame)
    y = np.arange(len(table))
    several = table["n"] > 1
    labels = [m + (f"\n[{s}]" if s else "") + ("\n(max-norm never binds: not ranked)" if unbound else "")
              for m, s, unbound in zip(table["method"], table["selected"], table["max_norm_never_binds"])]
    ours_label = (f"ours: mean ± sd over seeds ({_n_note(table['n'])})" if several.any()
                  else "ours (one seed each, no error bars)")
    if runs.paper_scale:
        fig, axes = plt.subplots(1, 1, figsize=(WIDTH * 1.7, 0.42 * len(table) + 1.2))
        panels = [(axes, True, True)]
    else:  # errors on a small dataset are not the paper's scale: two panels, one row each
        fig, axes = plt.subplots(1, 2, figsize=(WIDTH * 2.2, 0.42 * len(table) + 1.2), sharey=True,
                                 gridspec_kw={"width_ratios": [1, 1.4]})
        panels = [(axes[0], True, False), (axes[1], False, True)]
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
    _save(fig, out, caption)
    display = table9_display(table, runs.paper_scale)
    write_markdown(display, f"{out}.md", caption)
    write_latex(display, f"{out}.tex", caption)


def plot_table9_ci(frame: pd.DataFrame, out: str, source: str) -> None:
    """Mean ± 95 % CI per row, and Welch's t-test between neighbouring rows: which of the paper's
    small gaps can this many seeds resolve?"""
    runs = Runs.read(frame, source)
    table = table9(frame)
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
    ax.set_xlabel(f"our test error (%), mean ± 95 % CI ({_n_note(table['n'])}) — {runs.short}")
    ax.set_title(f"95 % CIs and Welch's t-test between neighbouring rows — {runs.short}", fontsize=7)
    significant = int((table["p_vs_previous"] < 0.05).sum())
    tested = int(table["p_vs_previous"].notna().sum())
    caption = runs.caption(
        f"Our Table 9 rows with 95 % confidence intervals of the mean over seeds (Student's t), and for each pair of "
        f"neighbouring rows the p-value of Welch's t-test for different means; {significant} of {tested} "
        "neighbouring differences are significant at 5 %. The paper's neighbouring rows differ by 0.02–0.30 points.")
    _save(fig, out, caption)


# ----------------------------------------------------------------------------- curves and weights
def plot_learning_curves(frame: pd.DataFrame, out: str, source: str) -> None:
    runs = Runs.read(frame, source)
    done = _with_runs(frame, "learning curves")
    curves, kinds = [], []
    for r in done.itertuples():
        m = load_metrics(r.run_dir, _warn)
        held_out = "val/error" if "val/error" in m else "test/error"
        kinds.append(held_out)
        curves.append(pd.DataFrame({"update": m["update"], "training (dropout on)": m["train/error"],
                                    "held out": m[held_out], "method": method_label(r.regularizer),
                                    "regularizer": r.regularizer, "seed": r.seed}))
    data = pd.concat(curves, ignore_index=True)
    held = "validation" if kinds[0] == "val/error" else "test"
    order = _order(data["regularizer"])
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
    _save(fig, out, caption)


def _first_layer(run_dir: str) -> np.ndarray:
    state = Checkpoint.load(Path(run_dir) / "last.ckpt").state_dict
    return state["net.layers.0.weight"][0].numpy()  # [in, out]: unit j's incoming weights are column j


def plot_weight_histograms(frame: pd.DataFrame, out: str, source: str) -> None:
    runs = Runs.read(frame, source)
    done = _with_runs(frame, "weight histograms")
    order = _order(done["regularizer"])
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
    _save(fig, out, caption)


# ----------------------------------------------------------------------------- sweeps
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
    return f"error bars: ± sd over seeds ({_n_note(n)})" if n.max() > 1 else "one seed per point, no error bars"


def plot_dropout_rate(frame: pd.DataFrame, out: str, source: str) -> None:
    _need(frame, "p", source)
    runs = Runs.read(frame, source)
    done = _with_runs(frame, "the dropout-rate figure")
    if runs.paper_scale:
        fig, ax = plt.subplots(figsize=(WIDTH, WIDTH * 0.8))
        ours_ax = paper_ax = ax
    else:  # our errors and the paper's are on different scales: side by side, same p axis
        fig, (ours_ax, paper_ax) = plt.subplots(1, 2, figsize=(WIDTH * 1.9, WIDTH * 0.8), sharex=True)
        paper_ax.set_title("paper, Fig. 9a (MNIST, 784-2048-2048-2048-10)", fontsize=7)
        ours_ax.set_title(f"ours — {runs.short}", fontsize=7)
    _line(ours_ax, _mean_sd(done, ["p"], "test_error"), "p", "ours: test", "C0")
    _line(ours_ax, _mean_sd(done, ["p"], "final_train_error"), "p", "ours: training (dropout on)", "C1", marker="s")
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
                           f"the paper's Fig. 9a (784-2048-2048-2048-10 on MNIST); {_bars_note(done, ['p'])}.")
    _save(fig, out, caption)


def plot_dataset_size(frame: pd.DataFrame, out: str, source: str) -> None:
    _need(frame, "n", source)
    runs = Runs.read(frame, source)
    done = _with_runs(frame, "the dataset-size figure")
    fig, ax = plt.subplots(figsize=(WIDTH, WIDTH * 0.8))
    for reg, group in done.groupby("regularizer", sort=False):
        _line(ax, _mean_sd(group, ["n"], "test_error"), "n", f"ours: {method_label(reg).replace(' (ours)', '')}",
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
                           f"paper's Fig. 10 on MNIST, dashed); {_bars_note(done, ['regularizer', 'n'])}.")
    _save(fig, out, caption)


def plot_lambda_sweep(frame: pd.DataFrame, out: str, source: str) -> None:
    _need(frame, "lam", source)
    _need(frame, "bias", source)
    runs = Runs.read(frame, source)
    done = _with_runs(frame, "the penalty sweep").copy()
    done["biases"] = done["bias"].map(lambda v: "biases penalized" if is_true(v) else "biases not penalized")
    regs = _order(done["regularizer"])
    fig, axes = plt.subplots(1, len(regs), figsize=(WIDTH * 0.9 * len(regs), WIDTH * 0.8), sharey=True, squeeze=False)
    for ax, reg in zip(axes[0], regs):
        group = done[done["regularizer"] == reg]
        for i, (biases, g) in enumerate(group.groupby("biases", sort=True)):
            # the two lines often coincide (bias penalties barely matter): dodge one a little in λ
            _line(ax, _mean_sd(g, ["lam"], "test_error"), "lam", biases, COLORS.get(reg, "C0"),
                  marker="os"[i % 2], dodge=1.12 ** i, linestyle="-:"[i % 2])
        ax.set_xscale("log")
        ax.set_xlabel("penalty weight λ")
        ax.set_title(method_label(reg), fontsize=8)
        ax.legend(fontsize=6)
    axes[0, 0].set_ylabel("test error (%)")
    caption = runs.caption("Test error against the penalty weight λ of L1 and L2, with the biases penalized or not "
                           "(one line dodged by 12 % in λ where they coincide); "
                           f"{_bars_note(done, ['regularizer', 'lam', 'bias'])}.")
    _save(fig, out, caption)


def plot_notmnist_table(frame: pd.DataFrame, out: str, source: str) -> None:
    _need(frame, "n", source)
    runs = Runs.read(frame, source)
    _with_runs(frame, "the L2-vs-dropout table")
    table = notmnist_table(frame)
    long = table.melt(id_vars="Method", var_name="training set", value_name="test error (%)")
    fig, ax = plt.subplots(figsize=(WIDTH * 1.2, WIDTH * 0.85))
    sns.barplot(data=long, x="Method", y="test error (%)", hue="training set", ax=ax)
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=6, title_fontsize=6)
    ax.tick_params(axis="x", rotation=25, labelsize=6)
    ax.set_xlabel("")
    dataset = runs.config["dataset"]["name"]
    ax.set_title(f"L2 vs dropout, the notMNIST exercise's protocol, on {dataset}", fontsize=7)
    caption = runs.caption(f"The notMNIST exercise (784-1024-10, SGD 0.5, batch 128, β·l2_loss): test error per "
                           f"method on all training examples and on the first 500, here on {dataset}.")
    _save(fig, out, caption)
    write_markdown(table, f"{out}.md", caption)
    write_latex(table, f"{out}.tex", caption)


# ----------------------------------------------------------------------------- tuning
def plot_tuning(frame: pd.DataFrame, out: str, source: str) -> None:
    """Validation error against each tuned value, per method; the selected candidate starred."""
    _need(frame, "final_val_error", source)
    runs = Runs.read(frame, source)
    keys = sweep_axes(frame)  # the tuned keys, one column each
    regs = _order(frame["regularizer"])
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
        ok = group[group["status"] == "completed"]
        mean = ok.groupby(tuned, dropna=False)["final_val_error"].mean().reset_index()
        series = [((), mean)] if not others else list(mean.groupby(others, sort=True, dropna=False))
        for values, m in series:
            values = values if isinstance(values, tuple) else (values,)
            label = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in zip(others, values))
            m = m.sort_values(x)
            ax.plot(m[x], m["final_val_error"], marker="o", markersize=3, linewidth=1, label=label or None)
        chosen = group[group["selected"]].iloc[0] if group["selected"].any() else None
        if chosen is not None:
            ax.plot(chosen[x], ok[(ok[tuned] == chosen[tuned]).all(axis=1)]["final_val_error"].mean(), marker="*",
                    markersize=11, color="gold", markeredgecolor="black", linestyle="none", zorder=4)
        bad = group[group["status"] != "completed"]
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
    updates = int(frame["updates"].max())
    fig.suptitle(f"Tuning on the validation split — {runs.config['dataset']['name']}, {runs.model}, "
                 f"{updates:,} updates per candidate", fontsize=8)
    fig.tight_layout()
    caption = runs.caption("Tuning on the validation split: final validation error (mean over tuning seeds) against "
                           "each tuned value, per method; the selected candidate is starred, candidates that diverged "
                           "or failed to learn are red crosses.")
    _save(fig, out, caption)


FIGURES: dict[str, Callable[[pd.DataFrame, str, str], None]] = {
    "table9": plot_table9,
    "table9_ci": plot_table9_ci,
    "learning_curves": plot_learning_curves,
    "weight_histograms": plot_weight_histograms,
    "dropout_rate": plot_dropout_rate,
    "dataset_size": plot_dataset_size,
    "lambda_sweep": plot_lambda_sweep,
    "notmnist_table": plot_notmnist_table,
    "tuning": plot_tuning,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dropreg.figures", description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted(FIGURES))
    parser.add_argument("--results", required=True, help="results/<preset>/<study>.csv (tuning: <study>/tuning.csv)")
    parser.add_argument("--out", required=True, help="output path without extension")
    args = parser.parse_args(argv)
    try:
        frame = read_results(args.results)
        try:
            FIGURES[args.kind](frame, args.out, args.results)
        except NothingToDraw as nothing:
            _nothing_to_draw(frame, args.out, args.results, str(nothing))
    except (FigureInputError, RunFileError, OSError, pd.errors.ParserError) as exc:
        print(f"dropreg.figures: error: {exc}", file=sys.stderr)
        return 1
    print(f"dropreg.figures: {args.out}.* ({args.kind})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

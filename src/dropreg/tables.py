"""Tables that put the paper's numbers beside ours: Table 9 (with confidence intervals and tests
between neighbouring rows) and the notMNIST study; Markdown and LaTeX writers.

Runs that diverged or failed to learn are counted, never averaged. A study with sweep axes gets one
row per regularizer and sweep point. At the paper's scale (full MNIST, its net) our errors are set
beside the paper's with their difference; on anything smaller absolute errors are not comparable,
so the comparison is by rank and by the dropout gain instead.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import pandas as pd

from .paper import METHOD_LABELS, TABLE9_TEST_ERROR, display_order
from .status import ENDED_BADLY, Status

# The columns of a study's results (dropreg.summarize writes them, sweep axes after "seed"; select's
# tuning.csv has a subset, and its tuned keys). The sweep axes a figure plots are declared in
# dropreg.figure_kinds (`needs`); a column that is in neither is an extra column.
# The activity columns come from each summary's `regularizer_activity` (empty where it does not apply).
ACTIVITY_COLUMNS = ["units_at_max_norm", "weights_near_zero", "kl_sparsity_mean_activity"]
RUN_COLUMNS = ["study", "run", "regularizer", "seed", "selected", "status", "diverged_at_update", "test_error",
               "best_val_error", "best_val_update", "final_val_error", "largest_val_rise", "final_train_error", "updates",
               "wall_seconds",
               "pack_size", "device", *ACTIVITY_COLUMNS, "run_dir"]
# tuning.csv's own: the run is of its regularizer's selected candidate (bool)
CHOSEN = "chosen"
# what every results table (summarize's study CSV, select's tuning.csv) has in every row
RESULT_COLUMNS = ("run", "regularizer", "status", "run_dir")


def completed(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"] == Status.COMPLETED.value]


def extra_columns(frame: pd.DataFrame) -> list[str]:
    """The columns that are not run columns: a study's sweep axes, or tuning.csv's tuned keys."""
    return [c for c in frame.columns if c not in RUN_COLUMNS and c != CHOSEN]


def is_true(value) -> bool:
    """A boolean sweep value as it comes back from a CSV (True, "True", 1, "yes")."""
    return str(value).lower() in ("true", "1", "yes")


def method_label(reg: str) -> str:
    return METHOD_LABELS.get(reg, reg)


def _point_label(row: pd.Series, axes: list[str]) -> str:
    parts = []
    for a in axes:
        v = row[a]
        if pd.isna(v):
            continue
        if a == "n":
            parts.append(f"N = {int(v):,}")
        elif a == "p":
            parts.append(f"p = {v:g}")
        elif a == "lam":
            parts.append(f"λ = {v:g}")
        elif a == "bias":
            parts.append("biases penalized" if is_true(v) else "biases not penalized")
        else:
            parts.append(f"{a} = {v}")
    return ", ".join(parts)


def t_interval(values: pd.Series) -> float:
    """Half-width of the 95 % confidence interval of the mean (Student's t); nan for n < 2."""
    from scipy import stats

    n = len(values)
    if n < 2:
        return float("nan")
    return float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n))


def welch_p(a: pd.Series, b: pd.Series) -> float:
    """Two-sided p-value of Welch's t-test for different means; nan unless both have n >= 2."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return float("nan")
    if a.std(ddof=1) == 0 and b.std(ddof=1) == 0:
        return 1.0 if a.mean() == b.mean() else 0.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def table9(frame: pd.DataFrame, axes: Sequence[str] = ()) -> pd.DataFrame:
    """One row per regularizer (and point of the sweep `axes`): the paper's value, our mean, sd and
    95 % CI over the completed seeds, the runs that diverged or failed to learn, ranks, and for each
    row the Welch p-value against the row before it."""
    axes = list(axes)
    keys = ["regularizer", *axes]
    order = {r: i for i, r in enumerate(display_order(frame["regularizer"]))}
    groups = []
    for _, runs in frame.groupby(keys, sort=False, dropna=False):
        first = runs.iloc[0]
        groups.append((order[first["regularizer"]], first, runs))
    groups.sort(key=lambda g: g[0])  # stable: sweep points stay in the preset's order
    rows, previous = [], None
    for _, first, runs in groups:
        done = completed(runs)["test_error"]
        reg = first["regularizer"]
        point = _point_label(first, axes)
        paper = TABLE9_TEST_ERROR.get(reg) if not point else None
        selected = first.get("selected") if isinstance(first.get("selected"), str) and first.get("selected") else ""
        mean = float(done.mean()) if len(done) else float("nan")
        at_bound = completed(runs).get("units_at_max_norm", pd.Series([], dtype=float)).dropna()
        rows.append({
            "regularizer": reg, **{a: first[a] for a in axes},
            "method": method_label(reg) + (f" ({point})" if point else ""),
            "selected": selected,
            "paper": paper,
            "ours_mean": mean,
            "ours_sd": float(done.std(ddof=1)) if len(done) > 1 else float("nan"),
            "ours_ci": t_interval(done),
            "n": len(done),
            **{s.value: int((runs["status"] == s.value).sum()) for s in (Status.DIVERGED, Status.FAILED_TO_LEARN)},
            "difference": mean - paper if paper is not None else float("nan"),
            "p_vs_previous": welch_p(previous, done) if previous is not None else float("nan"),
            # its max-norm bound held no unit of any completed run at the end: it trained unconstrained
            "max_norm_never_binds": bool(len(at_bound)) and bool((at_bound == 0).all()),
        })
        previous = done
    table = pd.DataFrame(rows)
    table["our_rank"] = table["ours_mean"].where(~table["max_norm_never_binds"]).rank(method="min")
    has_paper = table["paper"].notna()
    table.loc[has_paper, "paper_rank"] = table.loc[has_paper, "paper"].rank(method="min")
    return table


def dropout_gain(table: pd.DataFrame) -> Optional[str]:
    """`L2 -> Dropout + Max-norm: paper -35 %, ours -x %` when both rows are there."""
    rows = table.set_index("regularizer")
    if not {"l2", "dropout_max_norm"} <= set(rows.index) or table.duplicated("regularizer").any():
        return None
    a, b = rows.loc["l2", "ours_mean"], rows.loc["dropout_max_norm", "ours_mean"]
    if not (a > 0 and b == b):
        return None
    pa, pb = TABLE9_TEST_ERROR["l2"], TABLE9_TEST_ERROR["dropout_max_norm"]
    unbound = (" (its max-norm never binds: dropout alone)"
               if rows.loc["dropout_max_norm"].get("max_norm_never_binds") else "")
    return (f"L2 → Dropout + Max-norm: paper {100 * (pb - pa) / pa:+.0f} % ({pa:.2f} → {pb:.2f}), "
            f"ours {100 * (b - a) / a:+.0f} % ({a:.2f} → {b:.2f}){unbound}")


def _fmt(value: float, digits: int = 2, signed: bool = False) -> str:
    if value is None or pd.isna(value):
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _ours(r) -> str:
    text = _fmt(r.ours_mean) + ("" if pd.isna(r.ours_sd) else f" ± {_fmt(r.ours_sd)}") + f" (n={r.n})"
    notes = [f"{getattr(r, s)} {s.replace('_', ' ')}" for s in ENDED_BADLY if getattr(r, s)]
    if r.max_norm_never_binds:
        notes.append("max-norm never binds: no unit at the bound, so not ranked")
    return text + (f" [{', '.join(notes)}]" if notes else "")


def table9_display(table: pd.DataFrame, paper_scale: bool) -> pd.DataFrame:
    """The table as printed: at paper scale with the difference to the paper, else with ranks."""
    out = {"Method": table["method"]}
    if table["selected"].astype(bool).any():
        out["Selected on validation"] = table["selected"].replace("", "–")
    out["Paper test error (%)"] = [_fmt(v) for v in table["paper"]]
    out["Ours test error (%), mean ± sd"] = [_ours(r) for r in table.itertuples()]
    if paper_scale:
        out["Ours − paper"] = [_fmt(v, signed=True) for v in table["difference"]]
    else:
        out["Paper rank"] = [_fmt(v, 0) for v in table.get("paper_rank", pd.Series([None] * len(table)))]
        out["Our rank"] = [_fmt(v, 0) for v in table["our_rank"]]
    return pd.DataFrame(out)


def notmnist_table(frame: pd.DataFrame, size_column: str = "n") -> pd.DataFrame:
    """Test error (%) per method (rows) and training-set size (columns), mean over completed seeds."""
    done = completed(frame).copy()
    if done.empty:
        return pd.DataFrame({"Method": []})
    done[size_column] = done[size_column].map(lambda v: "all" if pd.isna(v) else f"first {int(v):,}")
    pivot = done.pivot_table(index="regularizer", columns=size_column, values="test_error", aggfunc="mean")
    pivot = pivot.loc[display_order(pivot.index)]
    pivot.index = [method_label(r) for r in pivot.index]
    return pivot.rename_axis("Method").reset_index()


# ----------------------------------------------------------------------------- writers
_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_LATEX_UNICODE = {"±": r"$\pm$", "−": "$-$", "→": r"$\to$", "λ": r"$\lambda$", "β": r"$\beta$", "ρ": r"$\rho$",
                  "≤": r"$\leq$", "≥": r"$\geq$", "–": "--", "×": r"$\times$", "·": r"$\cdot$", "∈": r"$\in$",
                  "≈": r"$\approx$", "’": "'"}


def latex_escape(text: str) -> str:
    """Plain text as LaTeX that pdflatex compiles: specials escaped, the few non-ASCII symbols we
    print as math."""
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))
    return "".join(_LATEX_UNICODE.get(ch, ch) for ch in out)


def write_markdown(table: pd.DataFrame, path: str, caption: str) -> None:
    from .atomic import write_text

    write_text(path, f"{caption}\n\n{table.to_markdown(index=False, floatfmt='.2f')}\n")


def write_latex(table: pd.DataFrame, path: str, caption: str) -> None:
    """A `table` environment with a `tabular` (booktabs rules); every cell and the caption escaped."""
    from .atomic import write_text

    columns = list(table.columns)
    lines = [r"\begin{table}", r"\centering", rf"\caption{{{latex_escape(caption)}}}",
             r"\begin{tabular}{" + "l" * len(columns) + "}", r"\toprule",
             " & ".join(latex_escape(c) for c in columns) + r" \\", r"\midrule"]
    for row in table.itertuples(index=False):
        cells = [_fmt(v) if isinstance(v, float) else str(v) for v in row]
        lines.append(" & ".join(latex_escape(c) for c in cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    write_text(path, "\n".join(lines))

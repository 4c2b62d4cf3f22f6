"""Tables that put the paper's numbers beside ours: Table 9, and the notMNIST study."""

from __future__ import annotations

import pandas as pd

from .paper import TABLE9_ROW_LABELS, TABLE9_TEST_ERROR

# Table 9's rows in the paper's order, then the rows we add
TABLE9_ORDER = ["none", "dropout", "l2", "l2_l1_late", "l2_kl_sparsity", "max_norm", "dropout_l2", "dropout_max_norm"]
EXTRA_LABELS = {"none": "No regularization (ours)", "dropout": "Dropout only (ours)"}


def completed(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"] == "completed"]


def _mean_sd(errors: pd.Series) -> tuple[float, float]:
    return float(errors.mean()), float(errors.std(ddof=1)) if len(errors) > 1 else float("nan")


def table9(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per regularizer: paper value, our mean ± sd over completed seeds, difference."""
    rows = []
    regs = [r for r in TABLE9_ORDER if r in set(frame["regularizer"])]
    regs += sorted(set(frame["regularizer"]) - set(regs))
    for reg in regs:
        runs = frame[frame["regularizer"] == reg]
        done = completed(runs)
        mean, sd = _mean_sd(done["test_error"]) if len(done) else (float("nan"), float("nan"))
        paper = TABLE9_TEST_ERROR.get(reg)
        rows.append({
            "regularizer": reg,
            "method": TABLE9_ROW_LABELS.get(reg, EXTRA_LABELS.get(reg, reg)),
            "paper": paper,
            "ours_mean": mean,
            "ours_sd": sd,
            "seeds": len(done),
            "diverged": int((runs["status"] == "diverged").sum()),
            "difference": mean - paper if paper is not None else float("nan"),
        })
    return pd.DataFrame(rows)


def _fmt(value: float, digits: int = 2, signed: bool = False) -> str:
    if value is None or pd.isna(value):
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def table9_display(table: pd.DataFrame) -> pd.DataFrame:
    def ours(r) -> str:
        text = _fmt(r.ours_mean) + ("" if pd.isna(r.ours_sd) else f" ± {_fmt(r.ours_sd)}")
        note = f" ({r.diverged} diverged)" if r.diverged else ""
        return f"{text} (n={r.seeds}){note}"

    return pd.DataFrame({
        "Method": table["method"],
        "Paper test error (%)": [_fmt(v) for v in table["paper"]],
        "Ours test error (%)": [ours(r) for r in table.itertuples()],
        "Ours − paper": [_fmt(v, signed=True) for v in table["difference"]],
    })


def notmnist_table(frame: pd.DataFrame, size_column: str = "n") -> pd.DataFrame:
    """Test error (%) per regularizer (rows) and training-set size (columns)."""
    done = completed(frame).copy()
    done[size_column] = done[size_column].map(lambda v: "all" if pd.isna(v) else f"first {int(v)}")
    pivot = done.pivot_table(index="regularizer", columns=size_column, values="test_error", aggfunc="mean")
    order = [r for r in TABLE9_ORDER if r in pivot.index] + [r for r in pivot.index if r not in TABLE9_ORDER]
    return pivot.loc[order].reset_index()


def write_markdown(table: pd.DataFrame, path: str, caption: str) -> None:
    from .atomic import write_text

    write_text(path, f"{caption}\n\n{table.to_markdown(index=False, floatfmt='.2f')}\n")


def write_latex(table: pd.DataFrame, path: str, caption: str) -> None:
    from .atomic import write_text

    body = table.to_latex(index=False, float_format="%.2f", caption=caption, escape=True)
    write_text(path, body)

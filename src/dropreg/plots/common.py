"""What every figure shares: the results table read and checked, what ran (for captions), the
declared sweep axes, saving png/pdf/caption, and the figure of a study with nothing to draw."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .. import paper  # noqa: E402
from ..atomic import atomic_path, write_text  # noqa: E402
from ..figure_kinds import FIGURE_KINDS  # noqa: E402
from ..paper import display_order  # noqa: E402
from ..rundir import set_aside  # noqa: E402
from ..runfiles import load_summary  # noqa: E402
from ..status import ENDED_BADLY, STATUSES  # noqa: E402
from ..tables import RESULT_COLUMNS, completed, extra_columns, method_label, write_latex, write_markdown  # noqa: E402

WIDTH = 3.4  # inches: one column of a two-column paper
sns.set_theme(context="paper", style="whitegrid", font_scale=0.9)
COLORS = dict(zip(paper.TABLE9_ORDER, sns.color_palette("tab10", len(paper.TABLE9_ORDER))))
PAPER_STYLE = dict(color="black", marker="D", linestyle="--", linewidth=1, markersize=4)


class FigureInputError(ValueError):
    """A results table that lacks what a figure needs (names the file and what is missing)."""


class NothingToDraw(Exception):
    """No run of the study completed: the figure says so instead of plotting."""


def warn(line: str) -> None:
    print(f"dropreg.figures: warning: {line}", file=sys.stderr)


# ----------------------------------------------------------------------------- what ran
def _distinct(values) -> list:
    return list(dict.fromkeys(values))


def _set(values) -> str:
    """One value as itself; several (they differ between the runs drawn) joined by " / "."""
    return " / ".join(str(v) for v in _distinct(values))


def _span(numbers, unit: str) -> str:
    lo, hi = min(numbers), max(numbers)
    return f"{lo:,} {unit}" if lo == hi else f"{lo:,}–{hi:,} {unit}"


def _training_images(d: dict) -> int | None:
    """How many images a run trained on: its train_subset, else the split (validation merged in or not)."""
    if d.get("train_subset"):
        return int(d["train_subset"])
    try:
        counts = json.loads((Path(d["data_dir"]) / f"{d['name']}.manifest.json").read_text())["counts"]
        return counts["train"] + (0 if d["use_validation"] else counts["val"])
    except (OSError, ValueError, KeyError):
        return None


@dataclass
class Runs:
    """What a study's results say about the runs behind a figure: every run's config, so a caption
    describes all the runs drawn (a value, or the set or range where runs differ)."""

    frame: pd.DataFrame
    configs: list[dict]  # each run's resolved config, row by row
    source: str

    @classmethod
    def read(cls, frame: pd.DataFrame, source: str) -> "Runs":
        if frame.empty:
            raise FigureInputError(f"{source}: no runs")
        return cls(frame, [load_summary(Path(d) / "summary.json")["config"] for d in frame["run_dir"]], source)

    @property
    def paper_scale(self) -> bool:
        return all(paper.is_paper_scale(c) for c in self.configs)

    @property
    def dataset(self) -> str:
        return _set(c["dataset"]["name"] for c in self.configs)

    @property
    def model(self) -> str:
        return _set("-".join(str(w) for w in [c["dataset"]["input_dim"], *c["model"]["hidden"],
                                              c["dataset"]["num_classes"]]) + f" {c['model']['activation']}"
                    for c in self.configs)

    @cached_property
    def data(self) -> str:
        datasets = [c["dataset"] for c in self.configs]
        merged = set(not d["use_validation"] for d in datasets)
        counts = [_training_images(d) for d in datasets]
        if None in counts:
            what = {frozenset([False]): "train split", frozenset([True]): "train + validation"}.get(
                frozenset(merged), "train split, or train + validation")
        else:
            what = _span(counts, "training images") + {frozenset([False]): "", frozenset([True]): ", validation merged in"}\
                .get(frozenset(merged), ", validation merged in for some runs")
        return f"{self.dataset} ({what})"

    @property
    def updates(self) -> str:
        return _span([c["optim"]["max_updates"] for c in self.configs], "updates")

    @property
    def budget(self) -> str:
        optim = [c["optim"] for c in self.configs]
        return f"{self.updates} of batch {_set(o['batch_size'] for o in optim)} (optimizer {_set(o['name'] for o in optim)})"

    @property
    def short(self) -> str:
        return f"{self.dataset}, {self.model}, {self.updates}"

    def seeds(self) -> str:
        seeds = sorted(set(int(s) for s in self.frame["seed"]))
        return f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))}"

    def status_note(self) -> str:
        counts = self.frame["status"].value_counts()
        bad = [f"{counts[s]} {s.replace('_', ' ')}" for s in ENDED_BADLY if s in counts]
        return f" Left out of means and curves: {', '.join(bad)} run(s)." if bad else ""

    def caption(self, what: str) -> str:
        text = (f"{what} {self.data}; {self.model} net; {self.budget}; {self.seeds()}; "
                f"{len(self.frame)} runs.{self.status_note()}")
        picks = {}
        if "selected" in self.frame:
            for r, s in self.frame[["regularizer", "selected"]].itertuples(index=False):
                if isinstance(s, str) and s and s not in picks.setdefault(r, []):
                    picks[r].append(s)
        if picks:
            text += " Chosen on the validation split first: " + "; ".join(
                f"{method_label(r)}: {' / '.join(s)}" for r, s in picks.items()) + "."
        return text


# ----------------------------------------------------------------------------- the results table
def read_results(path: str) -> pd.DataFrame:
    """A results table, checked: readable, with its columns, every row complete (a table cut mid-row
    parses with the last fields empty). One that is not is set aside, so Snakemake writes it again."""
    problem = None
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise FigureInputError(f"{path}: no such results table; run the pipeline first") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # pandas' parser and empty-data errors
        problem = f"unreadable ({exc.__class__.__name__})"
    else:
        missing = [c for c in RESULT_COLUMNS if c not in frame]
        bad = frame[~frame["status"].isin(STATUSES) | frame["run_dir"].isna()] if not missing else frame.iloc[:0]
        if missing:
            problem = f"lacks column(s) {', '.join(missing)}"
        elif len(bad):
            problem = f"row {bad.index[0] + 2} is incomplete or has status {bad['status'].iloc[0]!r} (cut short?)"
        elif "test_error" in frame and not pd.api.types.is_numeric_dtype(frame["test_error"]):
            problem = "test_error holds values that are not numbers"
    if problem:
        raise stale_table(path, problem)
    return frame


def stale_table(path: str, problem: str) -> FigureInputError:
    """The error for a results table the pipeline must write again, once it is set aside."""
    kept = set_aside(Path(path))
    return FigureInputError(f"{path}: {problem}; set aside as {kept.name}: rerun the pipeline to write it again")


def need(frame: pd.DataFrame, column: str, source: str) -> None:
    if column not in frame:
        raise FigureInputError(f"{source}: column {column!r} missing (needed by this figure; "
                               f"columns are {list(frame.columns)})")


def sweep_axes(frame: pd.DataFrame, kind: str, source: str) -> tuple[str, ...]:
    """The sweep axes figure `kind` plots, as its registry entry declares them, checked against the
    table. Any other column that is not a run column must hold one value: the figure would pool
    runs that differ in it otherwise."""
    axes = FIGURE_KINDS[kind].needs
    for column in axes:
        need(frame, column, source)
    for column in extra_columns(frame):
        values = _distinct(frame[column].astype(str))
        if column not in axes and len(values) > 1:
            raise FigureInputError(f"{source}: column {column!r} is neither a run column nor a sweep axis of {kind} "
                                   f"(it plots {', '.join(axes) or 'none'}), and its runs differ in it "
                                   f"({', '.join(values[:4])}): drawing them together would pool them")
    return axes


def with_runs(frame: pd.DataFrame, what: str) -> pd.DataFrame:
    done = completed(frame)
    if done.empty:
        raise NothingToDraw(what)
    return done


def n_note(n: pd.Series) -> str:
    lo, hi = int(n.min()), int(n.max())
    return f"n = {lo}" if lo == hi else f"n = {lo}–{hi}"


# ----------------------------------------------------------------------------- writing
def save(fig: plt.Figure, out: str, caption: str) -> None:
    """out.png, out.pdf and out.caption.rst, each written to a temporary name first."""
    for ext in ("png", "pdf"):
        with atomic_path(f"{out}.{ext}") as tmp:
            fig.savefig(tmp, format=ext, dpi=200, bbox_inches="tight")
    plt.close(fig)
    write_text(f"{out}.caption.rst", caption + "\n")


def nothing_to_draw(frame: pd.DataFrame, out: str, source: str, what: str) -> None:
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
    save(fig, out, caption)
    if getattr(FIGURE_KINDS.get(Path(out).name), "table", False):
        note = pd.DataFrame({"Status": [f"no run completed ({counts})"]})
        write_markdown(note, f"{out}.md", caption)
        write_latex(note, f"{out}.tex", caption)


__all__ = ["COLORS", "PAPER_STYLE", "WIDTH", "FigureInputError", "NothingToDraw", "Runs", "display_order", "n_note", "need",
           "nothing_to_draw", "read_results", "save", "sweep_axes", "warn", "with_runs"]

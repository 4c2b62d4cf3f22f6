"""Every figure the pipeline can draw, in one registry: the Snakefile's rules, the preset checks
and `python -m dropreg.figures` all read it (and none of them imports matplotlib to do so).

A preset lists a study's figures by name (`studies.<s>.figures`); `tuning` is drawn for every
study with a `tune:` stage and is not listed. `needs` are the sweep axes (by name) the figure
plots; a table figure also writes `.md` and `.tex`; `source` says which results file it reads.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FigureKind:
    name: str
    plot: str  # "module:function" that draws it, imported only by the figure job
    needs: tuple[str, ...] = ()  # sweep axes the figure plots
    table: bool = False  # also writes <out>.md and <out>.tex
    source: str = "study"  # "study": results/<preset>/<study>.csv; "tuning": <study>/tuning.csv

    def outputs(self, base: str) -> list[str]:
        """The files a figure job writes for `base` (figures/<preset>/<study>/<kind>)."""
        return [f"{base}.{ext}" for ext in ("png", "pdf", *(("md", "tex") if self.table else ()))]


FIGURE_KINDS = {k.name: k for k in (
    FigureKind("table9", "dropreg.plots.table9:plot_table9", table=True),
    FigureKind("table9_ci", "dropreg.plots.table9:plot_table9_ci"),
    FigureKind("learning_curves", "dropreg.plots.training:plot_learning_curves"),
    FigureKind("weight_histograms", "dropreg.plots.training:plot_weight_histograms"),
    FigureKind("dropout_rate", "dropreg.plots.sweeps:plot_dropout_rate", needs=("p",)),
    FigureKind("dataset_size", "dropreg.plots.sweeps:plot_dataset_size", needs=("n",)),
    FigureKind("lambda_sweep", "dropreg.plots.sweeps:plot_lambda_sweep", needs=("lam", "bias")),
    FigureKind("notmnist_table", "dropreg.plots.sweeps:plot_notmnist_table", needs=("n",), table=True),
    FigureKind("tuning", "dropreg.plots.tuning:plot_tuning", source="tuning"),
)}
# what a preset may list in studies.<s>.figures (tuning comes with a tune: stage)
LISTABLE = tuple(name for name, k in FIGURE_KINDS.items() if k.source == "study")

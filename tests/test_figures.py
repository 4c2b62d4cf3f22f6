"""Figure and table functions on small fixture results (no training): paper overlays, error bars
only with several seeds, the paper's labels, captions from what ran, LaTeX that compiles."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.container import ErrorbarContainer

from conftest import resolved
from dropreg import figures
from dropreg.figures import FigureInputError
from dropreg.plots import common
from dropreg.paper import TABLE9_TEST_ERROR
from dropreg.runfiles import CHECKPOINT_FORMAT
from dropreg.tables import latex_escape, table9

REGS = ["none", "dropout", "l2", "l2_l1_late", "l2_kl_sparsity", "max_norm", "dropout_l2", "dropout_max_norm"]


def fake_run(run_dir, reg: str, seed: int, error: float, sparse: bool = False, **config_overrides) -> None:
    """A run dir as training leaves it: metrics.csv, a checkpoint of the config's net whose record
    is that metrics.csv, a summary."""
    run_dir.mkdir(parents=True)
    metrics = pd.DataFrame({"update": [100, 200], "train/loss": [1.0, 0.5], "train/error": [20.0, 10.0],
                            "val/error": [12.0, error + 1], "test/error": [11.0, error]})
    metrics.to_csv(run_dir / "metrics.csv", index=False)
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(1, 784, 16, generator=gen) * 0.05
    if sparse:
        w[torch.rand(w.shape, generator=gen) < 0.6] = 0.0
    overrides = [f"regularizer={reg}", "model.hidden=[16]", "model.init=lecun_normal", "optim=demo",
                 *(f"{k}={v}" for k, v in config_overrides.items())]
    config = resolved(*overrides)
    state = {"net.layers.0.weight": w, "net.layers.0.bias": torch.zeros(1, 16),
             "net.layers.1.weight": torch.randn(1, 16, 10, generator=gen) * 0.25, "net.layers.1.bias": torch.zeros(1, 10)}
    torch.save({"state_dict": state, "dropreg": {"format": CHECKPOINT_FORMAT, "config": config, "update": 200,
                                                 "rows": metrics.to_dict("records")}}, run_dir / "last.ckpt")
    (run_dir / "summary.json").write_text(json.dumps({"run_id": run_dir.name, "status": "completed",
                                                      "test_error": error, "updates": 200, "config": config}))


def results(tmp_path, rows: list[dict]) -> pd.DataFrame:
    out = []
    for i, r in enumerate(rows):
        run_dir = tmp_path / "runs" / f"run{i}"
        fake_run(run_dir, r["regularizer"], r.get("seed", 1), r["test_error"], sparse=r.pop("sparse", False),
                 **r.pop("config", {}))
        out.append({"run": run_dir.name, "status": "completed", "final_train_error": 10.0, "seed": 1, "selected": "",
                    **r, "run_dir": str(run_dir)})
    return pd.DataFrame(out)


@pytest.fixture
def drawn(monkeypatch):
    """The figures and captions the figure functions produce (still open, for inspection)."""
    got = {}
    real = common.save

    def keep(fig, out, caption):
        got["fig"], got["caption"] = fig, caption
        fig.canvas.draw()
        real(fig, out, caption)

    monkeypatch.setattr(common, "save", keep)
    return got


@pytest.fixture
def table9_results(tmp_path):
    rows = [{"regularizer": reg, "seed": s, "test_error": 2.0 + 0.1 * i + 0.2 * s,
             "selected": "lr 0.1" if reg != "none" else ""} for i, reg in enumerate(REGS) for s in (1, 2, 3)]
    rows.append({"regularizer": "max_norm", "seed": 4, "test_error": 90.0, "status": "diverged"})
    return results(tmp_path, rows)


def _labels(fig) -> list[str]:
    out = []
    for ax in fig.axes:
        out += [t.get_text() for t in ax.get_yticklabels()] + [ax.get_title()]
        legend = ax.get_legend()
        if legend:
            out += [t.get_text() for t in legend.get_texts()]
    return out


def test_table9_holds_paper_and_our_numbers_by_the_papers_labels(table9_results, tmp_path, drawn):
    out = str(tmp_path / "fig" / "table9")
    figures.plot_function("table9")(table9_results, out, "fixture.csv")
    for ext in ("png", "pdf", "md", "tex", "caption.rst"):
        assert (tmp_path / "fig" / f"table9.{ext}").stat().st_size > 0
    md = (tmp_path / "fig" / "table9.md").read_text()
    for paper in TABLE9_TEST_ERROR.values():
        assert f"{paper:.2f}" in md
    # l2 is row 3: errors 2.4, 2.6, 2.8 -> 2.60 ± 0.20; not at paper scale, so ranks, not differences
    assert "| 2.60 ± 0.20 (n=3)" in md and "Our rank" in md and "Ours − paper" not in md
    assert "(n=3) [1 diverged]" in md  # max_norm's diverged seed is counted, not averaged
    assert "L2 + L1 applied towards the end of training" in md and "l2_l1_late" not in md
    assert "Dropout + Max-norm" in " ".join(_labels(drawn["fig"]))
    caption = drawn["caption"]
    assert "mnist5k" in caption and "784-16-10" in caption and "2,500 updates" in caption and "seeds 1, 2, 3" in caption
    assert "Chosen on the validation split first" in caption and "Dropout gain" in caption
    t = table9(table9_results)
    assert t.loc[t.regularizer == "max_norm", "ours_mean"].item() == pytest.approx(2.9)  # 2.7, 2.9, 3.1
    assert len(drawn["fig"].axes) == 2  # the paper's panel beside ours
    assert any(isinstance(c, ErrorbarContainer) for c in drawn["fig"].axes[1].containers)  # n = 3: error bars


def test_no_error_bars_with_one_seed(tmp_path, drawn):
    frame = results(tmp_path, [{"regularizer": r, "test_error": 3.0 + i} for i, r in enumerate(REGS)])
    figures.plot_function("table9")(frame, str(tmp_path / "t9"), "fixture.csv")
    assert not any(isinstance(c, ErrorbarContainer) for ax in drawn["fig"].axes for c in ax.containers)
    assert "one seed each, no error bars" in " ".join(_labels(drawn["fig"]))


def test_latex_output_has_no_unescaped_specials(table9_results, tmp_path):
    out = str(tmp_path / "t9")
    figures.plot_function("table9")(table9_results, out, "fixture.csv")
    tex = (tmp_path / "t9.tex").read_text()
    assert "\\begin{tabular}" in tex and "1.05" in tex
    body = re.sub(r"\\[a-zA-Z]+|\\[_%&$#{}]|\$[^$]*\$", "", tex)  # drop commands, escapes, math
    assert not re.search(r"[_%#]", body), body
    assert all(ord(ch) < 128 for ch in tex)  # pdflatex-safe: the ±, −, λ, → are math commands
    assert latex_escape("l2_l1 50% ±1 → λ") == r"l2\_l1 50\% $\pm$1 $\to$ $\lambda$"


def test_table9_ci_tests_neighbouring_rows(table9_results, tmp_path, drawn):
    figures.plot_function("table9_ci")(table9_results, str(tmp_path / "ci"), "fixture.csv")
    t = table9(table9_results)
    assert t["ours_ci"].notna().all() and t["p_vs_previous"].iloc[1:].notna().all()
    texts = [t.get_text() for t in drawn["fig"].axes[0].texts]
    assert any(s.startswith("p = ") for s in texts) and any("paper gap" in s for s in texts)
    assert "Welch" in drawn["caption"]


def test_weight_histograms_show_l1_sparse_and_max_norm_bounded(tmp_path, drawn):
    frame = results(tmp_path, [{"regularizer": "none", "test_error": 3.0},
                               {"regularizer": "l2_l1_late", "test_error": 3.0, "sparse": True},
                               {"regularizer": "max_norm", "test_error": 3.0}])
    figures.plot_function("weight_histograms")(frame, str(tmp_path / "w"), "fixture.csv")
    titles = [ax.get_title() for ax in drawn["fig"].axes]
    share = {t.split("\n")[0]: float(re.search(r"< 1e-3: ([\d.]+)%", t)[1]) for t in titles if "1e-3" in t}
    assert share["L2 + L1 applied towards the end of training"] > 50 > share["No regularization (ours)"]
    max_norm_axes = [ax for ax in drawn["fig"].axes if any(t.get_text().startswith("c = ") for t in ax.texts)]
    assert len(max_norm_axes) == 1  # the radius is drawn where there is one


@pytest.mark.parametrize("kind, axis, values, regs, paper_label", [
    ("dropout_rate", "p", [0.5, 1.0], ["dropout_max_norm"], "paper Fig. 9a: test"),
    ("dataset_size", "n", [100, 1000], ["none", "dropout"], "paper Fig. 10: with dropout"),
])
def test_sweep_figures_overlay_the_papers_values(tmp_path, drawn, kind, axis, values, regs, paper_label):
    rows = [{"regularizer": reg, "test_error": 5.0 + i, axis: v, "seed": s}
            for reg in regs for i, v in enumerate(values) for s in (1, 2)]
    figures.plot_function(kind)(results(tmp_path, rows), str(tmp_path / kind), "fixture.csv")
    labels = _labels(drawn["fig"])
    assert paper_label in labels
    assert any(isinstance(c, ErrorbarContainer) for c in drawn["fig"].axes[0].containers)  # 2 seeds: error bars
    if kind == "dataset_size":
        assert "ours: Dropout" in labels and not any(label.count("ours") > 1 for label in labels)


def test_each_other_figure_is_drawn(tmp_path, drawn):
    rows = [{"regularizer": reg, "test_error": 5.0 + i, "lam": lam, "bias": bias}
            for i, (reg, lam, bias) in enumerate([(r, lam, b) for r in ("l1", "l2") for lam in (1e-4, 1e-2)
                                                  for b in (False, True)])]
    figures.plot_function("lambda_sweep")(results(tmp_path / "a", rows), str(tmp_path / "lam"), "fixture.csv")
    assert {"biases penalized", "biases not penalized"} <= set(_labels(drawn["fig"]))
    rows = [{"regularizer": reg, "test_error": 5.0 + i, "n": n} for i, (reg, n) in
            enumerate([(r, n) for r in ("none", "l2", "dropout") for n in (np.nan, 500.0)])]
    figures.plot_function("notmnist_table")(results(tmp_path / "b", rows), str(tmp_path / "nm"), "fixture.csv")
    md = (tmp_path / "nm.md").read_text()
    assert "first 500" in md and "all" in md and "Dropout (ours)" in md
    assert "on mnist5k" in drawn["fig"].axes[0].get_title()  # the dataset that actually ran
    frame = results(tmp_path / "c", [{"regularizer": r, "test_error": 4.0, "seed": s} for r in ("none", "dropout")
                                     for s in (1, 2)])
    figures.plot_function("learning_curves")(frame, str(tmp_path / "lc"), "fixture.csv")
    assert [ax.get_yscale() for ax in drawn["fig"].axes] == ["linear", "linear"]  # one panel per split


def test_missing_sweep_column_and_no_completed_run_are_named(tmp_path):
    frame = results(tmp_path, [{"regularizer": "dropout", "test_error": 3.0}])
    with pytest.raises(FigureInputError, match=r"fixture.csv: column 'p' missing"):
        figures.plot_function("dropout_rate")(frame, str(tmp_path / "x"), "fixture.csv")



def test_a_study_whose_runs_all_failed_gets_figures_that_say_so(tmp_path):
    frame = results(tmp_path, [{"regularizer": "none", "test_error": 90.0, "status": "diverged"},
                               {"regularizer": "l2", "test_error": 90.0, "status": "failed_to_learn"}])
    frame.to_csv(tmp_path / "s.csv", index=False)
    frame.assign(n=500).to_csv(tmp_path / "s.csv", index=False)
    for kind in ("learning_curves", "weight_histograms", "table9", "notmnist_table"):
        assert figures.main([kind, "--results", str(tmp_path / "s.csv"), "--out", str(tmp_path / kind)]) == 0
        assert (tmp_path / f"{kind}.png").stat().st_size > 0
    for ext in ("md", "tex"):  # a table figure still delivers every file its job promises
        assert "no run completed (1 diverged, 1 failed to learn)" in (tmp_path / f"notmnist_table.{ext}").read_text() \
            .replace("\\_", "_")
    assert "No run of this study completed" in (tmp_path / "learning_curves.caption.rst").read_text()
    assert "1 diverged, 1 failed to learn" in (tmp_path / "weight_histograms.caption.rst").read_text()
    assert "[1 diverged]" in (tmp_path / "table9.md").read_text()


def test_tuning_figure_draws_every_tuned_key_and_stars_the_choice(tmp_path, drawn):
    """Three tuned keys: x is the first, one line per combination of the others; a regularizer with
    nothing tuned says so; the selected candidate is starred; a diverged candidate is a red cross."""
    rows = []
    for lr in (0.1, 0.3):
        for radius in (2.0, 3.0):
            for p in (0.5, 0.7):
                rows.append({"regularizer": "dropout_max_norm", "lr": lr, "max_norm_radius": radius,
                             "hidden_retain": p, "final_val_error": 5 + lr + radius / 10 + p,
                             "chosen": (lr, radius, p) == (0.1, 2.0, 0.5)})
    rows.append({"regularizer": "none", "final_val_error": 6.0, "chosen": True})
    rows.append({"regularizer": "dropout_max_norm", "lr": 1.0, "max_norm_radius": 2.0, "hidden_retain": 0.5,
                 "final_val_error": 90.0, "chosen": False, "status": "diverged"})
    # with every column select writes into tuning.csv, so none of them passes for a tuned key
    frame = results(tmp_path, [{**r, "test_error": r["final_val_error"], "updates": 200,
                                "best_val_error": r["final_val_error"] - 0.1, "largest_val_rise": 0.2} for r in rows])
    figures.plot_function("tuning")(frame, str(tmp_path / "tuning"), "tuning.csv")
    ax_none, ax_dmn = drawn["fig"].axes[:2]
    assert any(t.get_text() == "not tuned" for t in ax_none.texts)
    legend = [t.get_text() for t in ax_dmn.get_legend().get_texts()]
    assert sorted(legend) == ["max_norm_radius 2, hidden_retain 0.5", "max_norm_radius 2, hidden_retain 0.7",
                              "max_norm_radius 3, hidden_retain 0.5", "max_norm_radius 3, hidden_retain 0.7"]
    markers = [line.get_marker() for line in ax_dmn.get_lines()]
    assert markers.count("*") == 1 and markers.count("x") == 1


def test_a_tuning_table_without_its_chosen_column_is_set_aside(tmp_path, capsys):
    """A tuning.csv from before `chosen` existed: one line, and set aside so the next run writes it."""
    path = tmp_path / "tuning.csv"
    results(tmp_path, [{"regularizer": "none", "test_error": 5.0, "final_val_error": 5.0, "lr": 0.1}]).to_csv(path)
    assert figures.main(["tuning", "--results", str(path), "--out", str(tmp_path / "tuning")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "lacks column chosen" in err and "set aside" in err
    assert not path.exists() and list(tmp_path.glob("tuning.csv.unusable-*"))


def test_a_max_norm_row_that_never_binds_is_said_and_not_ranked(tmp_path, drawn):
    """units_at_max_norm = 0 in every completed run: the row trained unconstrained, a copy of its
    row without max-norm; the table says so instead of ranking it."""
    rows = [{"regularizer": r, "test_error": 3.0 + 0.1 * i,
             "units_at_max_norm": 0.0 if r == "max_norm" else 0.4 if r == "dropout_max_norm" else np.nan}
            for i, r in enumerate(REGS)]
    frame = results(tmp_path, rows)
    t = table9(frame)
    by = t.set_index("regularizer")
    assert by.loc["max_norm", "max_norm_never_binds"] and pd.isna(by.loc["max_norm", "our_rank"])
    assert not by.loc["dropout_max_norm", "max_norm_never_binds"] and by["our_rank"].max() == len(REGS) - 1
    figures.plot_function("table9")(frame, str(tmp_path / "t9"), "fixture.csv")
    md = (tmp_path / "t9.md").read_text()
    (line,) = [x for x in md.splitlines() if x.startswith("| Max-norm ")]
    assert "max-norm never binds" in line and line.rstrip("| ").endswith("–")
    assert "Max-norm\n(max-norm never binds: not ranked)" in _labels(drawn["fig"])  # the figure says it too


def test_only_the_papers_budget_on_its_data_and_net_is_compared_digit_for_digit():
    """The quick preset (real MNIST, paper_mlp, 1,500 updates) is a miniature: ranks, not differences."""
    from dropreg.paper import is_paper_scale

    paper = resolved("dataset=mnist", "model=paper_mlp", "optim=paper")
    assert is_paper_scale(paper)
    assert not is_paper_scale(resolved("dataset=mnist", "model=paper_mlp", "optim=quick"))
    assert not is_paper_scale(resolved("dataset=mnist", "model=paper_mlp", "optim=paper", "dataset.train_subset=5000"))
    assert not is_paper_scale(resolved("dataset=mnist5k", "model=paper_mlp", "optim=paper"))


def test_the_caption_describes_every_run_drawn_not_the_first(tmp_path, drawn):
    """Runs at N = 100 and 3,500: the caption gives the range, not the first run's size."""
    rows = [{"regularizer": reg, "test_error": 5.0, "n": n, "config": {"dataset.train_subset": n}}
            for reg in ("none", "dropout") for n in (100, 3500)]
    figures.plot_function("dataset_size")(results(tmp_path, rows), str(tmp_path / "ds"), "fixture.csv")
    assert "mnist5k (100–3,500 training images)" in drawn["caption"]

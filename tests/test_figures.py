"""Figure and table functions on small fixture results (no training)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from dropreg.figures import FIGURES, FigureInputError
from dropreg.paper import TABLE9_TEST_ERROR
from dropreg.tables import table9

REGS = ["none", "dropout", "l2", "l2_l1_late", "l2_kl_sparsity", "max_norm", "dropout_l2", "dropout_max_norm"]


def fake_run(run_dir, seed: int, error: float, sweep: dict | None = None) -> None:
    run_dir.mkdir(parents=True)
    pd.DataFrame({"update": [100, 200], "train/error": [20.0, 10.0], "val/error": [12.0, error + 1],
                  "test/error": [11.0, error]}).to_csv(run_dir / "metrics.csv", index=False)
    gen = torch.Generator().manual_seed(seed)
    torch.save({"state_dict": {"model.hidden_layers.0.weight": torch.randn(16, 784, generator=gen) * 0.05}},
               run_dir / "last.ckpt")


def results(tmp_path, rows: list[dict]) -> pd.DataFrame:
    out = []
    for i, r in enumerate(rows):
        run_dir = tmp_path / "runs" / f"run{i}"
        fake_run(run_dir, r.get("seed", 1), r["test_error"])
        out.append({"status": "completed", "final_train_error": 10.0, "seed": 1, **r, "run_dir": str(run_dir)})
    return pd.DataFrame(out)


@pytest.fixture
def table9_results(tmp_path):
    rows = [{"regularizer": reg, "seed": s, "test_error": 2.0 + 0.1 * i + 0.2 * s}
            for i, reg in enumerate(REGS) for s in (1, 2, 3)]
    rows.append({"regularizer": "max_norm", "seed": 4, "test_error": 90.0, "status": "diverged"})
    return results(tmp_path, rows)


def test_table9_holds_paper_and_our_numbers(table9_results, tmp_path):
    out = str(tmp_path / "fig" / "table9")
    (tmp_path / "fig").mkdir()
    FIGURES["table9"](table9_results, out, "Preset `t`, 3 seeds.", "fixture.csv")
    for ext in ("png", "pdf", "md", "tex"):
        assert (tmp_path / "fig" / f"table9.{ext}").stat().st_size > 0
    md = (tmp_path / "fig" / "table9.md").read_text()
    assert md.startswith("Preset `t`, 3 seeds.")
    for reg, paper in TABLE9_TEST_ERROR.items():
        assert f"{paper:.2f}" in md
    # l2 is row 2: errors 2.4, 2.6, 2.8 -> 2.60 ± 0.20, difference 2.60 - 1.62
    assert "| 2.60 ± 0.20 (n=3)" in md and "+0.98" in md
    assert "(1 diverged)" in md  # max_norm's diverged seed is counted, not averaged
    t = table9(table9_results)
    assert t.loc[t.regularizer == "max_norm", "ours_mean"].item() == pytest.approx(2.9)  # 2.7, 2.9, 3.1
    tex = (tmp_path / "fig" / "table9.tex").read_text()
    assert "\\begin{tabular}" in tex and "1.05" in tex


@pytest.mark.parametrize("kind, extra", [
    ("learning_curves", {}),
    ("weight_histograms", {}),
    ("dropout_rate", {"p": [0.5, 1.0]}),
    ("dataset_size", {"n": [100, 1000]}),
    ("lambda_sweep", {"lam": [1e-4, 1e-2], "bias": [False, True]}),
    ("notmnist_table", {"n": [np.nan, 500.0]}),
])
def test_each_figure_is_drawn(tmp_path, kind, extra):
    rows = []
    for reg in ("none", "dropout"):
        keys = list(extra)
        for values in zip(*extra.values()) if extra else [()]:
            rows.append({"regularizer": reg, "test_error": 5.0 + len(rows), **dict(zip(keys, values))})
    frame = results(tmp_path, rows)
    out = tmp_path / "out" / kind
    out.parent.mkdir()
    FIGURES[kind](frame, str(out), "caption", "fixture.csv")
    assert out.with_suffix(".png").stat().st_size > 1000 and out.with_suffix(".pdf").is_file()
    if kind == "notmnist_table":
        md = out.with_suffix(".md").read_text()
        assert "first 500" in md and "all" in md


def test_missing_sweep_column_is_named(tmp_path):
    frame = results(tmp_path, [{"regularizer": "dropout", "test_error": 3.0}])
    with pytest.raises(FigureInputError, match=r"fixture.csv: column 'p' missing"):
        FIGURES["dropout_rate"](frame, str(tmp_path / "x"), "", "fixture.csv")

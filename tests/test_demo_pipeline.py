"""The demo preset end to end through Snakemake (budget shrunk), its report, and plot-only reruns."""

from __future__ import annotations

import os

import pandas as pd
import yaml

from conftest import ROOT
from dropreg import pipeline
from test_pipeline import job_counts, snakemake


def test_demo_preset_end_to_end(tmp_path):
    cfg = yaml.safe_load((ROOT / "conf" / "pipeline" / "demo.yaml").read_text())
    cfg["overrides"] = ["model.init=lecun_normal", "optim.max_updates=60", "trainer.eval_every=30"]
    preset = tmp_path / "demo_ci.yaml"
    preset.write_text(yaml.safe_dump(cfg))
    proc = snakemake("--cores", "2", "--config", f"preset={preset}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    pipe = pipeline.load({"preset": str(preset)})
    for target in pipe.figure_targets():
        assert (tmp_path / target).stat().st_size > 0, target
    t9 = pd.read_csv(tmp_path / "results" / "demo" / "table9.csv")
    assert len(t9) == 8 and set(t9["status"]) == {"completed"} and (t9["updates"] == 60).all()
    md = (tmp_path / "figures" / "demo" / "table9" / "table9.md").read_text()
    assert "1.05" in md and "1.62" in md  # the paper's numbers ...
    ours = t9.loc[t9.regularizer == "dropout_max_norm", "test_error"].item()
    assert f"{ours:.2f} (n=1)" in md  # ... beside ours
    sizes = pd.read_csv(tmp_path / "results" / "demo" / "dataset_size.csv")
    assert sorted(sizes["n"].unique()) == [100, 500, 1000, 3500]

    report = snakemake("--report", "report.html", "--config", f"preset={preset}", cwd=tmp_path)
    assert report.returncode == 0, report.stdout[-2000:]
    html = (tmp_path / "report.html").read_text()
    assert "weight_histograms" in html and "Preset `demo`" in html

    # editing only the plotting code redraws the 7 figures and retrains nothing (Snakemake 9 compares
    # checksums, so the content must change; the original bytes and mtime are put back afterwards)
    code = ROOT / "src" / "dropreg" / "figures.py"
    original, stat = code.read_bytes(), code.stat()
    try:
        code.write_bytes(original + b"\n# edited by test_demo_pipeline\n")
        dry = snakemake("-n", "--config", f"preset={preset}", cwd=tmp_path)
    finally:
        code.write_bytes(original)
        os.utime(code, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    counts = job_counts(dry.stdout)
    assert counts == {"plot": 5, "plot_table": 2, "all": 1, "total": 8}, dry.stdout[-2000:]

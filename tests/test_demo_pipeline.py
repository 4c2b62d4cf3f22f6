"""The demo preset end to end through Snakemake (budget shrunk), its report, plot-only reruns, and
what an edited preset, a copied summary or a deleted run dir does to a finished pipeline."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import yaml

from conftest import ROOT
from dropreg import pipeline
from test_pipeline import job_counts, snakemake, trains


def _preset(tmp_path: Path, name: str, edit=None) -> str:
    cfg = yaml.safe_load((ROOT / "presets" / "demo.yaml").read_text())
    cfg["preset"] = name
    if edit:
        edit(cfg)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _shrink(cfg: dict) -> None:
    cfg["overrides"] = [o for o in cfg["overrides"] if not o.startswith(("optim.max_updates", "trainer.eval_every"))]
    cfg["overrides"] += ["optim.max_updates=60", "trainer.eval_every=30"]
    for study in cfg["studies"].values():
        study["overrides"] = [o for o in study.get("overrides", []) if not o.startswith("optim.max_updates")]
        if "tune" in study:
            study["tune"]["updates"] = 30


def test_demo_preset_end_to_end(tmp_path):
    preset = _preset(tmp_path, "demo_ci", _shrink)
    proc = snakemake("--cores", "2", "--config", f"preset={preset}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    pipe = pipeline.load({"preset": preset})
    for target in pipe.figure_targets():
        assert (tmp_path / target).stat().st_size > 0, target
    t9 = pd.read_csv(tmp_path / "results" / "demo_ci" / "table9.csv")
    assert len(t9) == 8 * len(pipe.study("table9")["seeds"]) and (t9["updates"] == 60).all()
    assert set(t9["status"]) <= {"completed", "failed_to_learn"}
    selected = yaml.safe_load((tmp_path / "results" / "demo_ci" / "table9" / "selected.yaml").read_text())
    assert set(selected["regularizers"]) == set(pipe.study("table9")["regularizers"])
    md = (tmp_path / "figures" / "demo_ci" / "table9" / "table9.md").read_text()
    assert "1.05" in md and "1.62" in md and "Selected on validation" in md  # the paper's numbers, ours, the choice
    sizes = pd.read_csv(tmp_path / "results" / "demo_ci" / "dataset_size.csv")
    assert sorted(sizes["n"].unique()) == sorted(pipe.study("dataset_size")["sweep"][0]["values"])

    report = snakemake("--report", "report.html", "--config", f"preset={preset}", cwd=tmp_path)
    assert report.returncode == 0, report.stdout[-2000:]
    html = (tmp_path / "report.html").read_text()
    assert "weight_histograms" in html and "mnist5k" in html and "Chosen on the validation split first" in html

    # nothing left to do, and editing only the plotting code redraws the figures and retrains nothing
    # (Snakemake 9 compares checksums, so the content must change; bytes and mtime are put back)
    assert "Nothing to be done" in snakemake("-n", "--config", f"preset={preset}", cwd=tmp_path).stdout
    code = ROOT / "src" / "dropreg" / "figures.py"
    original, stat = code.read_bytes(), code.stat()
    try:
        code.write_bytes(original + b"\n# edited by test_demo_pipeline\n")
        dry = snakemake("-n", "--config", f"preset={preset}", cwd=tmp_path)
    finally:
        code.write_bytes(original)
        os.utime(code, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    counts = job_counts(dry.stdout)
    assert trains(counts) == 0 and "select" not in counts, dry.stdout[-2000:]
    assert counts["plot"] + counts["plot_table"] + counts["plot_tuning"] == \
        len([t for t in pipe.figure_targets() if t.endswith(".png")])


def _small(name: str, updates: int, regs=("none", "dropout"), eval_every: int = 30, pack_size: int | None = None):
    """Table 9 alone, untuned, one seed, no figures; `pack_size` 1 makes one pack (job) per run."""
    def edit(cfg):
        study = cfg["studies"]["table9"]
        study.update(regularizers=list(regs), seeds=[1], figures=[])
        study.pop("tune")
        cfg["studies"] = {"table9": study}
        cfg["overrides"] = ["model.init=lecun_normal", f"optim.max_updates={updates}",
                            f"trainer.eval_every={eval_every}"]
        if pack_size:
            cfg["pack_size"] = pack_size
    return edit


def test_edits_copies_and_deletions_rerun_cleanly(tmp_path):
    run = tmp_path / "results" / "small" / "runs" / "table9"
    preset = _preset(tmp_path, "small", _small("small", 60))
    assert snakemake("--cores", "2", "--config", f"preset={preset}", cwd=tmp_path).returncode == 0
    old = json.loads((run / "none-seed1" / "summary.json").read_text())

    # an edited budget: both runs train again at the new budget, the old results kept aside
    preset = _preset(tmp_path, "small", _small("small", 90))
    proc = snakemake("--cores", "2", "--config", f"preset={preset}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert json.loads((run / "none-seed1" / "summary.json").read_text())["updates"] == 90
    (kept,) = (run / "none-seed1" / "replaced").iterdir()
    assert json.loads((kept / "summary.json").read_text()) == old
    log = (tmp_path / "logs" / "small" / "train" / "table9" / "final1.log").read_text()
    assert "held a run of another config (optim.max_updates: 60 there, 90 now)" in log

    # a summary copied over another run's: refused in one line naming the file
    (run / "dropout-seed1" / "summary.json").write_bytes((run / "none-seed1" / "summary.json").read_bytes())
    proc = snakemake("results/small/table9.csv", "--cores", "1", "--forcerun", "summarize",
                     "--config", f"preset={preset}", cwd=tmp_path)
    assert proc.returncode != 0
    summarize_log = (tmp_path / "logs" / "small" / "summarize" / "table9.log").read_text()
    assert "dropout-seed1/summary.json: written by run 'none-seed1', not 'dropout-seed1'" in summarize_log

    # a deleted run dir: the next run retrains it (its pack mate is restored from its checkpoint)
    import shutil

    shutil.rmtree(run / "dropout-seed1")
    proc = snakemake("--cores", "2", "--config", f"preset={preset}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert json.loads((run / "dropout-seed1" / "summary.json").read_text())["updates"] == 90
    log = (tmp_path / "logs" / "small" / "train" / "table9" / "final1.log").read_text()
    assert "none-seed1: ended earlier (completed); nothing to do" in log


def test_an_edited_preset_reruns_exactly_the_packs_it_changes(tmp_path):
    """One pack per run: replacing dropout by dropout + L2 plans and trains that pack again (and
    summarizes), and leaves the pack of `none` alone; `snakemake -n` says so up front."""
    preset = _preset(tmp_path, "edit", _small("edit", 60, pack_size=1))
    assert snakemake("--cores", "2", "--config", f"preset={preset}", cwd=tmp_path).returncode == 0
    preset = _preset(tmp_path, "edit", _small("edit", 60, regs=("none", "dropout_l2"), pack_size=1))
    dry = snakemake("-n", "--config", f"preset={preset}", cwd=tmp_path)
    assert dry.returncode == 0, dry.stdout[-2000:]
    counts = job_counts(dry.stdout)
    assert counts.get("plan") == 1 and trains(counts) == 1 and counts.get("train_table9_final2") == 1, counts
    assert "train_table9_final1" not in counts

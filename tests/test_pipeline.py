"""The Snakemake pipeline: presets, config validation, dry runs, lint, and the offline error."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from dropreg import pipeline
from dropreg.pipeline import PipelineConfigError

SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]


def snakemake(*args: str, cwd: Path, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([*SNAKEMAKE, "--directory", str(cwd), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def job_counts(output: str) -> dict[str, int]:
    stats = output.split("Job stats:")[1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, flags=re.M)}


@pytest.mark.parametrize("preset, trains, table9", [("paper", 74, 24), ("demo", 41, 8)])
def test_dry_run_of_every_preset(tmp_path, preset, trains, table9):
    assert len(pipeline.load({"preset": preset}).runs["table9"]) == table9  # 8 variants x seeds
    proc = snakemake("-n", "--config", f"preset={preset}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    counts = job_counts(proc.stdout)
    assert counts["train"] == trains
    assert counts["plot"] + counts["plot_table"] == 7
    if preset == "paper":
        assert counts["download"] == 2 and counts["prepare"] == 2  # mnist, notmnist
    else:
        assert "download" not in counts and counts["prepare"] == 1  # mnist5k is embedded


def test_run_ids_and_overrides_are_predictable():
    pipe = pipeline.load({"preset": "paper"})
    assert sorted(pipe.runs["table9"])[:3] == ["dropout-seed1", "dropout-seed2", "dropout-seed3"]
    run = pipe.runs["lambda_sweep"]["l1-lam0.001-biasyes-seed1"]
    assert "regularizer.l1.weight=0.001" in run.overrides and "regularizer.l1.include_biases=true" in run.overrides
    nall = pipe.runs["udacity_notmnist"]["l2-nall-seed1"]
    assert "dataset.train_subset=null" in nall.overrides and "regularizer.l2.form=half_sum" in nall.overrides
    assert not any("l2" in o for o in pipe.runs["udacity_notmnist"]["none-n500-seed1"].overrides[6:] if "weight" in o)
    assert pipe.run_dir("table9", "none-seed1") == "results/paper/runs/table9/none-seed1"


def test_every_run_config_composes():
    """All 115 runs of both presets are valid training configs (Hydra + range checks)."""
    from dropreg.config import compose, validate

    for preset in ("paper", "demo"):
        for runs in pipeline.load({"preset": preset}).runs.values():
            for run in runs.values():
                validate(compose(list(run.overrides)))


def _bad_preset(tmp_path: Path, edit) -> str:
    cfg = yaml.safe_load((ROOT / "conf" / "pipeline" / "demo.yaml").read_text())
    edit(cfg)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["studies"]["table9"]["regularizers"].append("bogus"),
     "studies.table9.regularizers[8]='bogus': allowed are"),
    (lambda c: c["studies"]["table9"].update(seeds=[]), "studies.table9.seeds: [] should be non-empty"),
    (lambda c: c["studies"]["dataset_size"].update(dataset="cifar"), "studies.dataset_size.dataset: 'cifar' is not one of"),
    (lambda c: c["studies"]["table9"].update(model="resnet"), "studies.table9.model='resnet'"),
    (lambda c: c["studies"]["table9"].update(learning_rate=3), "studies.table9: Additional properties are not allowed"),
    (lambda c: c.update(gpus_per_run=-1), "gpus_per_run: -1 is less than the minimum of 0"),
])
def test_bad_pipeline_config_names_the_key(tmp_path, edit, message):
    with pytest.raises(PipelineConfigError) as info:
        pipeline.load({"preset": _bad_preset(tmp_path, edit)})
    assert message in str(info.value) and "bad.yaml" in str(info.value)


def test_bad_pipeline_config_stops_snakemake_before_any_job(tmp_path):
    bad = _bad_preset(tmp_path, lambda c: c["studies"]["table9"].update(seeds=[]))
    proc = snakemake("-n", "--config", f"preset={bad}", cwd=tmp_path)
    assert proc.returncode != 0
    assert "studies.table9.seeds: [] should be non-empty" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_unknown_preset(tmp_path):
    with pytest.raises(PipelineConfigError, match=r"preset='papr': no file .* presets are \['demo', 'paper'\]"):
        pipeline.load({"preset": "papr"})


def test_lint_leaves_only_the_documented_conda_lint(tmp_path):
    proc = snakemake("--lint", "--config", "preset=demo", cwd=tmp_path)
    lints = set(re.findall(r"^\s+\* (.+?):?$", proc.stdout + proc.stderr, flags=re.M))
    assert lints == {"Specify a conda environment or container for each rule."}, proc.stdout
    assert "conda environment" in (ROOT / "README.md").read_text()


def test_offline_paper_run_stops_at_download_naming_the_demo(tmp_path):
    """No internet: every request goes to a loopback 'proxy' that answers 404 (no traffic leaves)."""
    from loopback_server import LoopbackServer

    with LoopbackServer() as proxy:
        env = {"http_proxy": proxy.base, "https_proxy": proxy.base, "HTTP_PROXY": proxy.base,
               "HTTPS_PROXY": proxy.base, "no_proxy": "", "NO_PROXY": ""}
        proc = snakemake("--cores", "1", "data/raw/mnist/files.json", cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "train-images-idx3-ubyte.gz: no source delivered a valid copy" in out
    assert "ossci-datasets.s3.amazonaws.com" in out and "preset=demo" in out
    assert not (tmp_path / "data" / "raw" / "mnist" / "train-images-idx3-ubyte.gz").exists()
    assert proxy.requests  # the downloads really went through the loopback proxy

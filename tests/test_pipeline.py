"""The Snakemake pipeline: presets, packs, tuning stage, validation when the DAG is built, dry runs,
command-line overrides, lint, and the offline error."""

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


def trains(counts: dict[str, int]) -> int:
    return sum(n for rule, n in counts.items() if rule.startswith("train_"))


@pytest.fixture(scope="module")
def paper():
    return pipeline.load({"preset": "paper"})


@pytest.fixture(scope="module")
def demo():
    return pipeline.load({"preset": "demo"})


@pytest.mark.parametrize("preset", ["paper", "demo"])
def test_dry_run_lists_tuning_select_and_final_runs(tmp_path, preset, request):
    pipe = request.getfixturevalue(preset)
    proc = snakemake("-n", "--config", f"preset={preset}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    counts = job_counts(proc.stdout)
    assert trains(counts) == len(pipe.packs)
    assert counts["select"] == sum(pipe.tuned(s) for s in pipe.config["studies"]) >= 1
    assert any(r.startswith("train_table9_tune") for r in counts) and "train_table9_final1" in counts
    assert counts["summarize"] == len(pipe.config["studies"])
    assert counts.get("plot", 0) + counts.get("plot_table", 0) + counts.get("plot_tuning", 0) == \
        len([t for t in pipe.figure_targets() if t.endswith(".png")])
    if preset == "paper":
        assert counts["download"] == 2 and counts["prepare"] == 2  # mnist, notmnist
    else:
        assert "download" not in counts and counts["prepare"] == 1  # mnist5k is embedded


def test_run_ids_packs_and_overrides_are_predictable(paper):
    table9 = paper.runs["table9"]
    assert len(table9) == 24 and sorted(table9)[:3] == ["dropout-seed1", "dropout-seed2", "dropout-seed3"]
    (pack,) = paper.study_packs("table9", "final")
    assert len(pack.runs) == 24 and pack.rule == "train_table9_final1"  # one pack of 24 on one GPU
    run = paper.runs["lambda_sweep"]["l1-lam0.001-biasyes-seed1"]
    assert "regularizer.l1.weight=0.001" in run.overrides and "regularizer.l1.include_biases=true" in run.overrides
    nall = paper.runs["udacity_notmnist"]["l2-nall-seed1"]
    assert "dataset.train_subset=null" in nall.overrides and nall.config["regularizer"]["l2"]["form"] == "half_sum"
    assert paper.layout.run_dir("table9", "none-seed1") == "results/paper/runs/table9/none-seed1"
    tune = paper.tuning["table9"]
    assert all(r.config["dataset"]["use_validation"] for r in tune.values())  # tuning: train/validation split
    assert not any(r.config["dataset"]["use_validation"] for r in table9.values())  # final: all 60,000


def test_every_pack_holds_runs_that_can_share_one(paper, demo):
    from dropreg.identity import check_packable

    for pipe in (paper, demo):
        for pack in pipe.packs:
            assert len(pack.runs) <= pipe.config.get("pack_size", 8)
            check_packable([r.config for r in pack.runs], [r.id for r in pack.runs])


def test_a_spec_gives_final_runs_the_selected_values(demo, tmp_path):
    selected = {"l2": {"selected": {"optim.lr": 0.05}, "overrides": ["optim.lr=0.05"]}}
    members = [m for pack in demo.study_packs("table9", "final") for m in demo.spec(pack, selected)["members"]]
    by_reg = {m["regularizer"]: m for m in members if m["seed"] == min(demo.study("table9")["seeds"])}
    assert by_reg["l2"]["config"]["optim"]["lr"] == 0.05 and by_reg["l2"]["selected"] == {"optim.lr": 0.05}
    assert by_reg["none"]["config"]["optim"]["lr"] != 0.05 and by_reg["none"]["selected"] == {}


def test_command_line_overrides_reach_every_run(demo):
    pipe = pipeline.load({"preset": "demo", "overrides": ["optim.max_updates=2000"]})
    runs = [r for stage in (pipe.runs, pipe.tuning) for study in stage.values() for r in study.values()]
    assert len(runs) == len([r for stage in (demo.runs, demo.tuning) for s in stage.values() for r in s.values()])
    assert {r.config["optim"]["max_updates"] for r in runs} == {2000}
    assert pipeline.load({"preset": "demo", "overrides": "trainer.eval_every=7"}).runs["table9"][
        "none-seed1"].config["trainer"]["eval_every"] == 7


def test_command_line_overrides_through_snakemake(tmp_path):
    ok = snakemake("-n", "--config", "preset=demo", "overrides=[optim.max_updates=2000]", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr[-2000:]
    bad = snakemake("-n", "--config", "preset=demo", "overrides=[optim.max_updates=abc]", cwd=tmp_path)
    assert bad.returncode != 0
    assert "presets/demo.yaml: --config overrides: optim.max_updates" in bad.stdout + bad.stderr


def _bad_preset(tmp_path: Path, edit) -> str:
    cfg = yaml.safe_load((ROOT / "presets" / "demo.yaml").read_text())
    cfg["preset"] = "demo_edit"
    edit(cfg)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _study(name):
    def get(c):
        return c["studies"][name]
    return get


BAD = [
    (lambda c: c["studies"]["table9"]["regularizers"].append("bogus"), "studies.table9.regularizers[8]='bogus'"),
    (lambda c: _study("table9")(c).update(seeds=[]), "studies.table9.seeds: [] should be non-empty"),
    (lambda c: _study("dataset_size")(c).update(dataset="cifar"), "studies.dataset_size.dataset: 'cifar' is not one of"),
    (lambda c: _study("table9")(c).update(model="resnet"), "studies.table9.model='resnet'"),
    (lambda c: _study("table9")(c).update(learning_rate=3), "studies.table9: Additional properties are not allowed"),
    (lambda c: c.update(gpus_per_pack=-1), "gpus_per_pack: -1 is less than the minimum of 0"),
    # the seven that used to pass `snakemake -n` and fail in every job
    (lambda c: _study("lambda_sweep")(c)["sweep"][0].update(values=[-1.0e-4]),
     "studies.lambda_sweep.sweep[0]: regularizer.l1.weight=-0.0001: allowed is a number >= 0"),
    (lambda c: _study("dropout_rate")(c)["sweep"][0].update(values=[0.0]),
     "studies.dropout_rate.sweep[0]: regularizer.dropout.hidden_retain=0.0: allowed is a number in (0, 1]"),
    (lambda c: _study("dropout_rate")(c)["sweep"][0].update(values=[1.5]),
     "studies.dropout_rate.sweep[0]: regularizer.dropout.hidden_retain=1.5: allowed is a number in (0, 1]"),
    (lambda c: _study("table9")(c).update(overrides=["regularizer.max_norm.radius=0"]),
     "studies.table9.overrides: regularizer.max_norm.radius=0.0: allowed is null or a number > 0"),
    (lambda c: _study("dropout_rate")(c)["sweep"][0].update(key="regularizer.dropout.hiden_retain"),
     "studies.dropout_rate.sweep[0]: regularizer.dropout.hiden_retain"),
    (lambda c: _study("table9")(c).update(overrides=["optim.learning_rate=0.1"]),
     "studies.table9.overrides: optim.learning_rate"),
    (lambda c: c.update(overrides=["optim.max_updates=abc"]), "bad.yaml: overrides: optim.max_updates"),
    # a figure the study cannot draw, a sweep that would collide, a reserved name
    (lambda c: _study("table9")(c)["figures"].append("dataset_size"),
     "studies.table9.figures: dataset_size plots a sweep named n, which this study lacks"),
    (lambda c: _study("dropout_rate")(c)["sweep"][0].update(values=[0.5, "0.5"]),
     "studies.dropout_rate: two runs would be named 'dropout_max_norm-p0.5-seed1'"),
    (lambda c: c.update(preset="demo"), "preset='demo' is the name of the shipped presets/demo.yaml"),
    (lambda c: _study("table9")(c)["tune"]["grid"].update(l9={"optim.lr": [0.1]}),
     "studies.table9.tune.grid.l9: neither `all` nor one of the study's regularizers"),
    (lambda c: _study("table9")(c)["tune"]["grid"].update(all={"optim.batch_size": [50, 100]}),
     "studies.table9.tune.grid.all.optim.batch_size: not tunable"),
    (lambda c: _study("table9")(c)["tune"]["grid"].update(l2={"regularizer.l2.weight": [-1.0]}),
     "studies.table9.tune.grid.l2.regularizer.l2.weight: regularizer.l2.weight=-1.0: allowed is a number >= 0"),
    (lambda c: _study("dropout_rate")(c)["sweep"][0].update(regularizers=["l2"]),
     "studies.dropout_rate.sweep[0].regularizers: ['l2'] not among the study's regularizers"),
]


@pytest.mark.parametrize("edit, message", BAD, ids=[m for _, m in BAD])
def test_bad_preset_names_the_file_and_key(tmp_path, edit, message):
    with pytest.raises(PipelineConfigError) as info:
        pipeline.load({"preset": _bad_preset(tmp_path, edit)})
    assert message in str(info.value) and "bad.yaml" in str(info.value) and "\n" not in str(info.value)


def test_bad_preset_stops_snakemake_before_any_job(tmp_path):
    bad = _bad_preset(tmp_path, lambda c: _study("table9")(c).update(overrides=["regularizer.max_norm.radius=0"]))
    proc = snakemake("-n", "--config", f"preset={bad}", cwd=tmp_path)
    assert proc.returncode != 0
    assert "bad.yaml: studies.table9.overrides: regularizer.max_norm.radius=0.0: allowed is" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_sweeps_apply_to_the_regularizers_they_name_and_values_stay_exact(tmp_path):
    def edit(c):
        c["studies"]["dataset_size"]["sweep"].append({"name": "noise", "key": "regularizer.dropout.input_retain",
                                                       "values": [0.9, 0.9000001], "regularizers": ["dropout"]})

    pipe = pipeline.load({"preset": _bad_preset(tmp_path, edit)})
    ids = set(pipe.runs["dataset_size"])
    assert "dropout-n100-noise0.9-seed1" in ids and "dropout-n100-noise0.9000001-seed1" in ids
    assert "none-n100-seed1" in ids and not any(i.startswith("none-") and "noise" in i for i in ids)
    run = pipe.runs["dataset_size"]["dropout-n100-noise0.9000001-seed1"]
    assert run.config["regularizer"]["dropout"]["input_retain"] == 0.9000001


def test_unknown_preset(tmp_path):
    with pytest.raises(PipelineConfigError, match=r"preset='papr': no file .* presets are \['demo', 'paper', 'quick'\]"):
        pipeline.load({"preset": "papr"})


def test_training_jobs_take_the_presets_resources_and_the_command_lines_gpus(tmp_path):
    """Every pack's rule: mem_mb and runtime from the preset, gpu from gpus_per_pack (overridable for
    one invocation with --config), what default-resources add (on a cluster only preparation and
    training jobs take them: every other rule is local), and `--set-resources` for one pack."""
    proc = snakemake("-n", "--config", "preset=paper", "gpus_per_pack=0", "--default-resources", "gpu_model='x'",
                     "--set-resources", "train_table9_final1:runtime=77", cwd=tmp_path)  # paper: gpus_per_pack 1
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = dict(re.findall(r"rule (\w+):\n((?:    .*\n)+)", proc.stdout))
    train = {r: body for r, body in jobs.items() if r.startswith("train_")}
    assert train and all("gpu=0" in b and "mem_mb=" in b and "runtime=" in b and "gpu_model=x" in b
                         for b in train.values())
    assert "runtime=77" in train.pop("train_table9_final1") and not any("runtime=77" in b for b in train.values())
    bad = snakemake("-n", "--config", "preset=demo", "gpus_per_pack=-1", cwd=tmp_path)
    assert bad.returncode != 0 and "--config gpus_per_pack=-1: allowed is an integer >= 0" in bad.stdout + bad.stderr


def test_lint_leaves_only_the_documented_conda_lint(tmp_path):
    proc = snakemake("--lint", "--config", "preset=demo", cwd=tmp_path)
    lints = set(re.findall(r"^\s+\* (.+?):?$", proc.stdout + proc.stderr, flags=re.M))
    assert lints == {"Specify a conda environment or container for each rule."}, proc.stdout


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

"""The SLURM profile: the sbatch arguments it yields, and real runs on a one-node local SLURM.

Tests marked `slurm` bring up scripts/local_slurm.py (needs root and the Debian packages slurm-wlm and
munge, which .ci/run installs) and skip with the reason otherwise.
"""

from __future__ import annotations

import filecmp
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from conftest import ROOT
from test_pipeline import snakemake

sys.path.insert(0, str(ROOT / "scripts"))
from local_slurm import LocalSlurm, SlurmUnavailable  # noqa: E402

PROFILE = str(ROOT / "profiles" / "slurm")
# what the test cluster needs beyond the profile: its partition, squeue for job states (no
# accounting) and quick status checks (the tiny preset below claims no GPU: the node has none)
TEST_SITE = ["--workflow-profile", PROFILE, "--default-resources", "slurm_partition='debug'", "runtime=10",
             "mem_mb=1000", "--slurm-status-command", "squeue",
             "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "2",
             "--slurm-keep-successful-logs", "--jobs", "4"]
LOCAL = ["--workflow-profile", "none", "--cores", "2"]


def _resources(line: str) -> dict:
    out = {}
    for item in line.split(", "):
        key, value = item.split("=", 1)
        out[key] = int(value) if value.isdigit() else value
    return out


class _Resources(dict):
    def __getattr__(self, name):
        return self[name]


def test_profile_sbatch_arguments_for_a_training_job(tmp_path):
    """The paper preset's Table 9 pack through the profile: one GPU, 4 CPUs per GPU, its wall time and memory."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    proc = snakemake("-n", "--workflow-profile", PROFILE, "--config", "preset=paper", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:]
    jobs = re.findall(r"rule train_table9_final1:\n((?:    .*\n)+)", proc.stdout)
    table9 = next(j for j in jobs if "runs/table9/" in j)  # the pack of Table 9's 24 final runs
    resources = _resources(re.search(r"resources: (.*)", table9)[1])
    threads = int(m[1]) if (m := re.search(r"threads: (\d+)", table9)) else 1
    job = SimpleNamespace(resources=_Resources(resources), threads=threads)
    params = {"run_uuid": "x", "slurm_logfile": "log", "comment_str": "train", "account": "",
              "partition": "", "workdir": str(tmp_path)}
    call = get_submit_command(job, params) + set_gres_string(job)
    assert "--gpus=1" in call and "--cpus-per-gpu=4" in call
    study = yaml.safe_load((ROOT / "presets" / "paper.yaml").read_text())["studies"]["table9"]
    paper = yaml.safe_load((ROOT / "presets" / "paper.yaml").read_text())
    assert f"-t {study.get('runtime_min', paper['runtime_min'])}" in call
    assert f"--mem {study.get('mem_mb', paper['mem_mb'])}" in call
    assert "--ntasks=" not in call  # GPU jobs get no implicit task geometry


def _tiny_preset(tmp_path: Path, regularizers: list[str], updates: int, every: int) -> str:
    cfg = yaml.safe_load((ROOT / "presets" / "demo.yaml").read_text())
    cfg["preset"] = "tiny"
    cfg["overrides"] = ["model.init=lecun_normal", f"optim.max_updates={updates}", f"trainer.eval_every={every}"]
    study = {k: v for k, v in cfg["studies"]["table9"].items() if k != "tune"}
    cfg["studies"] = {"table9": {**study, "regularizers": regularizers, "seeds": [1], "figures": []}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.fixture(scope="module")
def cluster():
    slurm = LocalSlurm(install=False)
    try:
        slurm.up()
    except SlurmUnavailable as exc:
        pytest.skip(f"no local SLURM: {exc}")
    yield slurm
    slurm.down()


@pytest.mark.slurm
def test_demo_target_through_sbatch_equals_local_run(cluster, tmp_path):
    preset = _tiny_preset(tmp_path, ["none", "dropout_max_norm"], updates=60, every=30)
    target = "results/tiny/table9.csv"
    started = time.monotonic()
    remote = snakemake(*TEST_SITE, target, "--config", f"preset={preset}", cwd=tmp_path / "slurm")
    assert remote.returncode == 0, remote.stdout[-3000:] + remote.stderr[-3000:]
    seconds = time.monotonic() - started
    out = remote.stdout + remote.stderr
    job_ids = re.findall(r"submitted with SLURM jobid (\d+)", out)
    assert len(job_ids) == 2, out[-2000:]  # prepare + one pack of 2 runs; summarize is a local rule
    logs = list((tmp_path / "slurm" / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert {re.search(r"(\d+)\.log$", p.name)[1] for p in logs} >= set(job_ids)

    local = snakemake(*LOCAL, target, "--config", f"preset={preset}", cwd=tmp_path / "local")
    assert local.returncode == 0, local.stdout[-2000:]
    for run in ("none-seed1", "dropout_max_norm-seed1"):
        a = tmp_path / "slurm" / "results" / "tiny" / "runs" / "table9" / run
        b = tmp_path / "local" / "results" / "tiny" / "runs" / "table9" / run
        assert filecmp.cmp(a / "metrics.csv", b / "metrics.csv", shallow=False)
        sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
        assert (sa["test_error"], sa["best_val_error"], sa["updates"]) == (sb["test_error"], sb["best_val_error"], sb["updates"])
    print(f"SLURM demo target: {seconds:.0f} s for {len(job_ids)} sbatch jobs")


@pytest.mark.slurm
def test_cancelled_training_resumes_from_checkpoint(cluster, tmp_path):
    preset = _tiny_preset(tmp_path, ["dropout_max_norm"], updates=3000, every=100)
    target = "results/tiny/runs/table9/dropout_max_norm-seed1/summary.json"
    run_dir = tmp_path / "slurm" / Path(target).parent
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory",
           str(tmp_path / "slurm"), *TEST_SITE, target, "--config", f"preset={preset}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    cancelled = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        metrics = run_dir / "metrics.csv"
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 4:  # 3 evaluations, 3 checkpoints
            running = subprocess.run(["squeue", "-h", "-t", "running", "-o", "%i"], capture_output=True,
                                     text=True).stdout.split()
            if running:
                cancelled = running[0]
                subprocess.run(["scancel", cancelled], check=True)
                break
        time.sleep(0.2)
    output, _ = proc.communicate(timeout=400)
    assert cancelled, "the training job finished before it could be cancelled:\n" + output[-2000:]
    assert proc.returncode == 0, output[-3000:]
    log = (tmp_path / "slurm" / "logs" / "tiny" / "train" / "table9" / "final1.log").read_text()
    assert "resuming" in log, log[-1500:]
    assert len(re.findall(r"submitted with SLURM jobid (\d+)", output)) >= 3  # prepare, train, its retry

    local = snakemake(*LOCAL, target, "--config", f"preset={preset}", cwd=tmp_path / "local")
    assert local.returncode == 0, local.stdout[-2000:]
    uninterrupted = tmp_path / "local" / Path(target).parent
    assert filecmp.cmp(run_dir / "metrics.csv", uninterrupted / "metrics.csv", shallow=False)
    a, b = (json.loads((d / "summary.json").read_text()) for d in (run_dir, uninterrupted))
    assert a["test_error"] == b["test_error"] and a["updates"] == b["updates"] == 3000

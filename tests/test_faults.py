"""Faults from outside the product: a second Snakemake on a preset, a pack orphaned by a killed
Snakemake, a full disk, damaged files of finished runs, two names for one run, renamed preset keys.
Each is met with one line naming the culprit, and nothing already produced is lost."""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import FAST
from dropreg import pipeline
from dropreg.pipeline import PipelineConfigError
from dropreg.specs import load_spec
from dropreg.train import cli, train
from test_demo_pipeline import _preset, _small
from test_pipeline import SNAKEMAKE, snakemake

BUDGET = ["optim.max_updates=100", "trainer.eval_every=50"]


# ----------------------------------------------------------------------------- invocations
def _two_packs(updates: int, eval_every: int = 100):
    """Table 9's none and dropout rows, one seed, one pack each, no figures."""
    return _small("", updates, eval_every=eval_every, pack_size=1)


def _start(preset: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([*SNAKEMAKE, "--directory", str(cwd), "--cores", "1", "--config", f"preset={preset}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _wait_until_training(cwd: Path, timeout: float = 300) -> Path:
    """The first run dir whose lock file names a holder (a pack is training), once it has one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for lock in (cwd / "results").glob("*/runs/table9/*/.lock"):
            if lock.read_text().strip():
                return lock.parent
        time.sleep(0.2)
    raise AssertionError("no pack started training")


def _pack_of(run: Path, cwd: Path) -> str:
    """The name of the pack (its spec's stem) that trains `run`."""
    for spec in (cwd / "results").glob("*/packs/table9/*.json"):
        if any((cwd / m["run_dir"]).resolve() == run.resolve() for m in load_spec(spec)["members"]):
            return spec.stem
    raise AssertionError(f"no pack spec names {run}")


def _summaries(cwd: Path, preset: str) -> list[Path]:
    return sorted((cwd / "results" / preset / "runs" / "table9").glob("*/summary.json"))


def test_a_second_snakemake_on_a_preset_is_refused_and_the_first_ends_well(tmp_path):
    """Snakemake's own lock refuses a second invocation and tells the user that `--unlock` removes
    it, which removes the running invocation's locks too (as does any invocation that ends, the
    issue found). The next invocation then gets past them and is stopped by the preset's lock, in
    one line, before any job; the first ends with every summary in place and exit 0."""
    preset = _preset(tmp_path, "twice", _two_packs(5000))
    first = _start(preset, tmp_path)
    _wait_until_training(tmp_path)
    refused = snakemake("--cores", "1", "--config", f"preset={preset}", cwd=tmp_path)
    assert refused.returncode != 0 and "--unlock" in refused.stderr
    assert snakemake("--unlock", "--config", f"preset={preset}", cwd=tmp_path).returncode == 0
    assert not list((tmp_path / ".snakemake" / "locks").glob("*"))  # the first's locks are gone
    second = snakemake("--cores", "1", "--config", f"preset={preset}", cwd=tmp_path)
    assert first.poll() is None, "the first invocation ended too soon for this test"
    errors = [line for line in second.stderr.splitlines() if "error" in line.lower()]
    assert second.returncode == 1 and len(errors) == 1, second.stderr[-2000:]
    assert errors[0].startswith("dropreg: error: preset twice: results/twice/ is being produced by the snakemake "
                                "of pid ")
    assert "Removing output files" not in second.stderr
    out, _ = first.communicate(timeout=900)
    assert first.returncode == 0, out[-3000:]
    assert len(_summaries(tmp_path, "twice")) == 2  # no summary deleted
    third = snakemake("--cores", "1", "--config", f"preset={preset}", cwd=tmp_path)  # once the first ended
    assert third.returncode == 0 and "Nothing to be done" in third.stdout + third.stderr


def test_a_pack_orphaned_by_a_killed_snakemake_is_waited_for(tmp_path):
    """kill -9 of Snakemake alone leaves its pack training; after --unlock the rerun's pack job waits
    for it (a line naming the holder), then finds its run ended and trains it no more."""
    preset = _preset(tmp_path, "orphan", _two_packs(15000, 1000))  # long enough to outlive the rerun's start
    first = _start(preset, tmp_path)
    run = _wait_until_training(tmp_path)
    os.kill(first.pid, signal.SIGKILL)  # Snakemake only: its job runs on
    first.wait()
    assert snakemake("--unlock", "--config", f"preset={preset}", cwd=tmp_path).returncode == 0
    rerun = snakemake("--cores", "1", "--config", f"preset={preset}", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    log = (tmp_path / "logs" / "orphan" / "train" / "table9" / f"{_pack_of(run, tmp_path)}.log").read_text()
    assert f"{run.relative_to(tmp_path)}: being trained by pid" in log and "waiting up to 20 min" in log
    assert "ended earlier (completed); nothing to do" in log
    assert len(_summaries(tmp_path, "orphan")) == 2


# ----------------------------------------------------------------------------- a full disk
@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs (root, and a kernel that lets us mount); unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                                           capture_output=True).returncode:
        pytest.skip("needs root and permission to mount a tmpfs")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_one_line_and_the_rerun_resumes(small_disk, data_dir, tmp_path, capsys):
    """demo_mlp's checkpoint is 1.6 MB: the first fits on the 3 MiB disk, the second (written beside
    it, then renamed) does not."""
    args = [f"dataset.data_dir={data_dir}", "model=demo_mlp", "model.init=lecun_normal", "optim=demo", "trainer=cpu",
            "optim.max_updates=150", "trainer.eval_every=50"]
    reference = tmp_path / "reference"
    assert cli([*args, f"hydra.run.dir={reference}"]) == 0
    run = small_disk / "run"
    capsys.readouterr()
    assert cli([*args, f"hydra.run.dir={run}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"dropreg.train: error: {run}/last.ckpt: no space left on device (")
    assert "MiB left on its filesystem" in err[-1]
    assert not [p for p in run.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]
    subprocess.run(["mount", "-o", "remount,size=16m", str(small_disk)], check=True)
    assert cli([*args, f"hydra.run.dir={run}"]) == 0
    assert filecmp.cmp(reference / "metrics.csv", run / "metrics.csv", shallow=False)


# ----------------------------------------------------------------------------- damaged files
@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_dir):
    """A finished run (100 updates, two evaluations) to damage copies of."""
    from conftest import resolved

    config = resolved(f"dataset.data_dir={data_dir}", *FAST, *BUDGET)
    run = tmp_path_factory.mktemp("finished") / "run"
    summary = train(config, run)
    return config, run, summary


def _copy(finished, tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(finished[1], run, ignore=shutil.ignore_patterns(".lock"))
    return run


def _cut_metrics_to_header(run: Path) -> None:
    (run / "metrics.csv").write_text((run / "metrics.csv").read_text().splitlines()[0] + "\n")


def _cut_metrics_mid_line(run: Path) -> None:
    text = (run / "metrics.csv").read_text()
    (run / "metrics.csv").write_text(text[: len(text) - 25])


def _summary_field(key, value):
    def spoil(run: Path) -> None:
        s = json.loads((run / "summary.json").read_text())
        s[key] = value
        (run / "summary.json").write_text(json.dumps(s))
    return spoil


def _checkpoint(edit):
    def spoil(run: Path) -> None:
        ckpt = torch.load(run / "last.ckpt", weights_only=True)
        edit(ckpt)
        torch.save(ckpt, run / "last.ckpt")
    return spoil


def _wrong_shape(ckpt) -> None:
    ckpt["state_dict"]["net.layers.0.weight"] = torch.zeros(1, 784, 259)


def _beyond_budget(ckpt) -> None:
    ckpt["dropreg"]["update"] = 10_000
    ckpt["dropreg"]["rows"][-1]["update"] = 10_000


# (spoil, the file named, what the line says, the run is trained again)
DAMAGE = {
    "metrics cut to its header": (_cut_metrics_to_header, "metrics.csv", "0 rows, the run's record has 2", False),
    "metrics cut mid-line": (_cut_metrics_mid_line, "metrics.csv", "rewritten from last.ckpt", False),
    "summary test_error a string": (_summary_field("test_error", "abc"), "summary.json",
                                    "test_error is 'abc', not a number 0-100", False),
    "summary updates negative": (_summary_field("updates", -5), "summary.json", "updates is -5, not an integer", False),
    "checkpoint of another shape": (_checkpoint(_wrong_shape), "last.ckpt",
                                    "net.layers.0.weight (1, 784, 259), expected (1, 784, 1024)", True),
    "checkpoint beyond the budget": (_checkpoint(_beyond_budget), "last.ckpt",
                                     "update 10000 is outside the run's budget 0-100", True),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_file_of_a_finished_run_is_one_line_and_set_aside(case, finished, tmp_path, caplog):
    """The rerun names the file and what is wrong in one line, keeps it as <name>.unusable-<time>, and
    ends with the finished run's own metrics and summary (restored, or the run trained again)."""
    config, source, summary = finished
    spoil, name, says, retrained = DAMAGE[case]
    run = _copy(finished, tmp_path)
    spoil(run)
    caplog.set_level("INFO", logger="dropreg.train")
    again = train(config, run)
    lines = [r.getMessage() for r in caplog.records if f"{run}/{name}:" in r.getMessage()]
    assert len(lines) == 1 and says in lines[0] and "set aside as" in lines[0] and "\n" not in lines[0], lines
    assert len(list(run.glob(f"{name}.unusable-*"))) == 1
    assert again["test_error"] == summary["test_error"] and again["updates"] == summary["updates"]
    assert filecmp.cmp(source / "metrics.csv", run / "metrics.csv", shallow=False)
    trained = any(r.getMessage().startswith("training 1 run as one pack") for r in caplog.records)
    assert trained == retrained


def test_a_summary_without_a_usable_checkpoint_is_not_a_finished_run(finished, tmp_path, caplog):
    """No model behind it (evaluate and the weight figures need one): set aside, trained again."""
    config, source, summary = finished
    run = _copy(finished, tmp_path)
    (run / "last.ckpt").unlink()
    again = train(config, run)
    (line,) = [r.getMessage() for r in caplog.records if "set aside" in r.getMessage()]
    assert line.startswith(f"{run}/summary.json: no last.ckpt beside it, so the run has no model; set aside")
    assert (run / "last.ckpt").is_file() and again["test_error"] == summary["test_error"]


def test_a_truncated_pack_spec_is_set_aside_so_the_pipeline_writes_it_again(finished, tmp_path, capsys):
    from dropreg.summarize import main

    spec = tmp_path / "final1.json"
    spec.write_text('{"study": "table9", "members": [{"run_id": ')
    assert main(["--out", str(tmp_path / "table9.csv"), str(spec)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{spec}: not a readable pack spec (JSONDecodeError); set aside as final1.json" in err
    assert not spec.exists() and len(list(tmp_path.glob("final1.json.unusable-*"))) == 1


def test_a_truncated_study_table_is_one_line_naming_it(tmp_path, capsys):
    from dropreg.figures import main

    table = tmp_path / "table9.csv"
    table.write_text("study,run,regularizer,seed,status,test_error,run_dir\ntable9,none-seed1,none,1,compl")
    assert main(["table9", "--results", str(table), "--out", str(tmp_path / "t9")]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"dropreg.figures: error: {table}: ")
    assert "rerun the pipeline to write it again" in err and not table.exists()


# ----------------------------------------------------------------------------- presets
def test_two_sweep_values_that_name_one_run_stop_the_dag_in_one_line(tmp_path):
    def edit(cfg):
        cfg["studies"]["dropout_rate"]["sweep"][0]["values"] = [0.5, 1, 1.0]
    with pytest.raises(PipelineConfigError) as info:
        pipeline.load({"preset": _preset(tmp_path, "twins", edit)})
    message = str(info.value)
    assert "runs 'dropout_max_norm-p1-seed1' and 'dropout_max_norm-p1.0-seed1' have the same resolved config" in message
    assert "\n" not in message


@pytest.mark.parametrize("old, new", [("gpus_per_run", "gpus_per_pack"), ("threads_per_run", "threads_per_pack")])
def test_a_renamed_preset_key_names_its_new_name(tmp_path, old, new):
    def edit(cfg):
        cfg[old] = cfg.pop(new)
    with pytest.raises(PipelineConfigError) as info:
        pipeline.load({"preset": _preset(tmp_path, "old", edit)})
    assert f"{old}: renamed {new!r}" in str(info.value) and "\n" not in str(info.value)
    assert yaml.safe_load((tmp_path / "old.yaml").read_text())[old] is not None


def test_learning_curves_of_a_run_whose_metrics_were_cut_come_from_its_checkpoint(finished, tmp_path, capsys):
    from dropreg.figures import main

    config, source, summary = finished
    run = _copy(finished, tmp_path)
    _cut_metrics_to_header(run)
    table = tmp_path / "table9.csv"
    table.write_text("study,run,regularizer,seed,status,test_error,run_dir\n"
                     f"table9,run,none,1,completed,{summary['test_error']},{run}\n")
    assert main(["learning_curves", "--results", str(table), "--out", str(tmp_path / "curves")]) == 0
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "warning" in x]
    assert line.startswith(f"dropreg.figures: warning: {run}/metrics.csv: 0 rows, the run's record has 2")
    assert "using the record in last.ckpt instead" in line and (tmp_path / "curves.png").stat().st_size > 0

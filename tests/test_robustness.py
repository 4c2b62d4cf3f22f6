"""Never lose, strand or mislabel a run: kills while checkpointing (with $TMPDIR on another
filesystem), one trainer per run dir, corrupt files, edits, and the smaller edges of issue 10."""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import FAST
from dropreg.data.prepared import manifest_path, npz_path, save_prepared
from dropreg.locks import Busy
from dropreg.rundir import RunDir
from dropreg.train import cli, train
from test_training import InterruptAfter, Interrupted

# a run with a large checkpoint (2048 hidden units: ~13 MB) written often, so a kill can land in a write
KILLABLE = [*FAST, "model.hidden=[2048]", "regularizer=dropout_max_norm", "optim.max_updates=600",
            "trainer.eval_every=50", "trainer.threads=1"]


@pytest.fixture
def other_filesystem(tmp_path):
    """A tmpfs mounted for the test: $TMPDIR on another filesystem than the run dirs."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "xdev"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if proc.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_kill_while_checkpointing_with_tmpdir_on_another_filesystem(data_dir, tmp_path, other_filesystem, make_cfg):
    full = tmp_path / "full"
    train(make_cfg(*KILLABLE), full)
    run = tmp_path / "killed"
    command = [sys.executable, "-m", "dropreg.train", f"dataset.data_dir={data_dir}", *KILLABLE, f"hydra.run.dir={run}"]
    env = {**os.environ, "TMPDIR": str(other_filesystem), "OMP_NUM_THREADS": "1"}
    kills = 0
    for _ in range(3):  # kill it three times, each time while a checkpoint is being written
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if any(p.name.startswith(".last.ckpt.") for p in run.glob(".*.tmp")):
                proc.send_signal(signal.SIGKILL)
                kills += 1
                break
            time.sleep(0.0005)
        proc.wait()
        if (run / "summary.json").exists():
            break
    assert kills >= 1, "no checkpoint write was caught in flight"
    assert not list(other_filesystem.iterdir())  # nothing of the run ever went through $TMPDIR
    assert subprocess.run(command, env=env, capture_output=True).returncode == 0
    assert filecmp.cmp(full / "metrics.csv", run / "metrics.csv", shallow=False)
    assert json.loads((run / "summary.json").read_text())["test_error"] == \
        json.loads((full / "summary.json").read_text())["test_error"]
    assert not list(run.glob(".*.tmp"))  # the killed writers' temporaries were cleaned up


def test_a_truncated_checkpoint_is_reported_set_aside_and_the_run_recovers(make_cfg, tmp_path, caplog):
    overrides = [*FAST, "regularizer=dropout", "optim.max_updates=300", "trainer.eval_every=100"]
    train(make_cfg(*overrides), tmp_path / "full")
    run = tmp_path / "cut"
    with pytest.raises(Interrupted):
        train(make_cfg(*overrides), run, callbacks=[InterruptAfter(2)])
    ckpt = run / "last.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    summary = train(make_cfg(*overrides), run)
    assert summary["status"] == "completed"
    (line,) = [r.message for r in caplog.records if "last.ckpt" in r.message]
    assert "unreadable checkpoint" in line and "set aside as last.ckpt.unusable-" in line and "\n" not in line
    assert len(list(run.glob("last.ckpt.unusable-*"))) == 1
    assert filecmp.cmp(tmp_path / "full" / "metrics.csv", run / "metrics.csv", shallow=False)


def test_a_second_trainer_on_a_run_dir_is_refused_in_one_line(make_cfg, data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from dropreg.rundir import RunDir; "
        f"d = RunDir({str(run)!r}, {{}}, '', print); d.lock(); print('locked', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(Busy, match=rf"{run}: being trained by pid {holder.pid} on .* since"):
            train(make_cfg(*FAST, "optim.max_updates=50"), run)
        code = cli([f"dataset.data_dir={data_dir}", *FAST, "optim.max_updates=50", f"hydra.run.dir={run}"])
        assert code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("dropreg.train: error: ") and "being trained by pid" in err[-1]
        assert not (run / "metrics.csv").exists()
    finally:
        holder.kill()
        holder.wait()
    assert train(make_cfg(*FAST, "optim.max_updates=50", "trainer.eval_every=50"), run)["status"] == "completed"


def test_a_run_of_an_older_version_without_a_new_key_is_still_the_same_run(make_cfg, tmp_path):
    """A key added later with a neutral default (here trainer.cuda_graph) does not invalidate runs."""
    import torch

    overrides = [*FAST, "optim.max_updates=100", "trainer.eval_every=100"]
    first = train(make_cfg(*overrides), tmp_path)
    ckpt = torch.load(tmp_path / "last.ckpt", weights_only=True)
    for config in (ckpt["dropreg"]["config"], ckpt["dropreg"]["summary"]["config"]):
        config["trainer"].pop("cuda_graph", None)  # (the two may be one object)
    torch.save(ckpt, tmp_path / "last.ckpt")
    (tmp_path / "summary.json").unlink()
    again = train(make_cfg(*overrides), tmp_path)
    assert again["test_error"] == first["test_error"] and not (tmp_path / "replaced").exists()


def test_a_trailing_slash_on_the_data_dir_is_the_same_run(make_cfg, data_dir, tmp_path):
    overrides = [*FAST, "optim.max_updates=200", "trainer.eval_every=100"]
    with pytest.raises(Interrupted):
        train(make_cfg(*overrides), tmp_path, callbacks=[InterruptAfter(1)])
    resumed = train(make_cfg(*overrides, f"dataset.data_dir={data_dir}/"), tmp_path)
    assert resumed["updates"] == 200 and not (tmp_path / "replaced").exists()


# ----------------------------------------------------------------------------- corrupt files
def _corrupt_copy(data_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "data"
    target.mkdir()
    for path in (npz_path(data_dir, "mnist5k"), manifest_path(data_dir, "mnist5k")):
        (target / path.name).write_bytes(path.read_bytes())
    return target


def _empty_npz_with_matching_md5(d: Path) -> None:
    npz_path(d, "mnist5k").write_bytes(b"")
    manifest = json.loads(manifest_path(d, "mnist5k").read_text())
    manifest["npz_md5"] = hashlib.md5(b"").hexdigest()
    manifest_path(d, "mnist5k").write_text(json.dumps(manifest))


DATA_DAMAGE = {
    "manifest garbage": (lambda d: manifest_path(d, "mnist5k").write_bytes(os.urandom(300)), "manifest.json"),
    "manifest truncated": (lambda d: manifest_path(d, "mnist5k").write_text(manifest_path(d, "mnist5k").read_text()[:40]),
                           "manifest.json"),
    "manifest a JSON list": (lambda d: manifest_path(d, "mnist5k").write_text("[1, 2]"), "manifest.json"),
    "manifest without npz_md5": (lambda d: manifest_path(d, "mnist5k").write_text(json.dumps(
        {k: v for k, v in json.loads(manifest_path(d, "mnist5k").read_text()).items() if k != "npz_md5"})),
        "manifest.json"),
    "empty npz with matching md5": (_empty_npz_with_matching_md5, "mnist5k.npz"),
}


@pytest.mark.parametrize("damage", list(DATA_DAMAGE))
def test_a_corrupt_prepared_dataset_is_one_line_naming_the_file(damage, data_dir, tmp_path, capsys):
    d = _corrupt_copy(data_dir, tmp_path)
    edit, culprit = DATA_DAMAGE[damage]
    edit(d)
    code = cli(["dataset.data_dir=" + str(d), *FAST, "optim.max_updates=20", f"hydra.run.dir={tmp_path / 'run'}"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dropreg.train: error: ") and culprit in err[0], err
    assert "prepare it again" in err[0]


RUN_FILE_DAMAGE = {
    "garbage": lambda p: p.write_text("this is not a checkpoint"),
    "random bytes": lambda p: p.write_bytes(os.urandom(5000)),
    "cut in half": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "empty": lambda p: p.write_bytes(b""),
}
SUMMARY_DAMAGE = {
    "garbage": lambda p: p.write_text("{not json"),
    "truncated": lambda p: p.write_text(p.read_text()[:50]),
    "an empty object": lambda p: p.write_text("{}"),
    "empty": lambda p: p.write_text(""),
    "a directory": lambda p: (p.unlink(), p.mkdir()),
}


@pytest.mark.parametrize("damage", list(RUN_FILE_DAMAGE))
def test_a_corrupt_checkpoint_is_one_line_and_the_run_goes_on(damage, make_cfg, tmp_path, caplog):
    overrides = [*FAST, "optim.max_updates=100", "trainer.eval_every=50"]
    with pytest.raises(Interrupted):
        train(make_cfg(*overrides), tmp_path, callbacks=[InterruptAfter(1)])
    RUN_FILE_DAMAGE[damage](tmp_path / "last.ckpt")
    assert train(make_cfg(*overrides), tmp_path)["updates"] == 100
    lines = [r.message for r in caplog.records if "last.ckpt" in r.message]
    assert len(lines) == 1 and str(tmp_path / "last.ckpt") in lines[0] and "set aside" in lines[0]


@pytest.mark.parametrize("damage", list(SUMMARY_DAMAGE))
def test_a_corrupt_summary_is_one_line_naming_the_file(damage, make_cfg, tmp_path, caplog, capsys):
    from dropreg.summarize import main as summarize

    overrides = [*FAST, "optim.max_updates=50", "trainer.eval_every=50"]
    run = tmp_path / "run"
    first = train(make_cfg(*overrides), run)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"study": "s", "members": [{"run_id": "run", "run_dir": str(run), "regularizer": "none",
                                                           "seed": 0, "sweep": {}, "selected": {},
                                                           "config": first["config"]}]}))
    SUMMARY_DAMAGE[damage](run / "summary.json")
    assert summarize(["--out", str(tmp_path / "s.csv"), str(spec)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(run / "summary.json") in err[0] and "rerun" in err[0], err
    # training puts the summary back from the run's checkpoint, saying so in one line
    assert train(make_cfg(*overrides), run) == first
    assert any(str(run / "summary.json") in r.message and "set aside" in r.message for r in caplog.records)


def test_a_summary_copied_from_another_run_dir_is_refused(make_cfg, tmp_path, capsys):
    from dropreg.summarize import main as summarize

    a = train(make_cfg(*FAST, "optim.max_updates=50", "trainer.eval_every=50"), tmp_path / "l2-seed1")
    b = train(make_cfg(*FAST, "optim.max_updates=50", "trainer.eval_every=50", "seed=2"), tmp_path / "none-seed2")
    (tmp_path / "none-seed2" / "summary.json").write_text(json.dumps(a))
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"study": "s", "members": [
        {"run_id": "none-seed2", "run_dir": str(tmp_path / "none-seed2"), "regularizer": "none", "seed": 2,
         "sweep": {}, "selected": {}, "config": b["config"]}]}))
    assert summarize(["--out", str(tmp_path / "s.csv"), str(spec)]) == 1
    assert "written by run 'l2-seed1', not 'none-seed2' (copied from another run dir?)" in capsys.readouterr().err


# ----------------------------------------------------------------------------- smaller edges
def test_a_dataset_with_an_empty_validation_split_trains(tmp_path):
    from conftest import resolved

    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(300, 28, 28), dtype=np.uint8)
    y = np.arange(300) % 10
    save_prepared(tmp_path, "mnist", {"train": (x[:200], y[:200]), "test": (x[200:], y[200:])}, {"sources": []})
    summary = train(resolved(*FAST, "dataset=mnist", f"dataset.data_dir={tmp_path}", "optim.max_updates=20",
                             "trainer.eval_every=10"), tmp_path / "run")
    assert summary["status"] in ("completed", "failed_to_learn") and summary["best_val_error"] is None


def test_a_bad_config_leaves_nothing_behind(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli(["regularizer.dropout.hidden_retain=1.5"]) == 2
    assert cli(["seed=4294967296"]) == 2
    assert list(tmp_path.iterdir()) == []
    assert "seed=4294967296: allowed is an integer in [0, 4294967295]" in capsys.readouterr().err


def test_the_rundir_lock_is_released_by_a_dead_holder(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "from dropreg.rundir import RunDir; import os; "
        f"RunDir({str(tmp_path)!r}, {{}}, '', print).lock(); os._exit(0)")])
    holder.wait()
    d = RunDir(tmp_path, {}, "", print)
    d.lock()  # no one holds it any more
    d.unlock()

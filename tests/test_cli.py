"""The command lines users already know: Hydra's (--help, --cfg, -m), progress lines in the log,
Lightning's loggers, and evaluating a checkpoint."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml

from conftest import FAST, ROOT
from dropreg.evaluate import main as evaluate
from dropreg.train import cli, train


def test_help_names_every_config_group_and_a_usage_line():
    proc = subprocess.run([sys.executable, "-m", "dropreg.train", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "Usage: python -m dropreg.train" in proc.stdout
    for group in ("dataset", "model", "regularizer", "optim", "trainer", "logger"):
        assert re.search(rf"^{group}: ", proc.stdout, flags=re.M), group
    assert "pipeline" not in proc.stdout  # Snakemake presets are not a config group


def test_cfg_job_prints_the_resolved_config(capsys):
    assert cli(["--cfg", "job", "regularizer=l2", "optim.lr=0.25"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["optim"]["lr"] == 0.25 and config["regularizer"]["name"] == "l2"


def test_multirun_trains_every_combination_in_its_own_dir(data_dir, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    code = cli(["-m", "regularizer=none,l2", "optim.max_updates=20", "trainer.eval_every=10", "dataset=mnist5k",
                f"dataset.data_dir={data_dir}", *FAST[:3], f"hydra.sweep.dir={sweep}"])
    assert code == 0
    dirs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert dirs == ["dataset=mnist5k,model.init=lecun_normal,model=udacity_mlp,optim.max_updates=20,optim=demo,"
                    f"regularizer={r},trainer.eval_every=10" for r in ("l2", "none")]
    for d in dirs:
        assert json.loads((sweep / d / "summary.json").read_text())["updates"] == 20
    out = capsys.readouterr().out
    assert len(re.findall(r"^dropreg.train: .*: test error .* after 20 updates", out, flags=re.M)) == 2


def test_a_bad_value_under_multirun_fails_in_one_line_before_any_run(tmp_path, capsys):
    code = cli(["-m", "regularizer=none,l2", "optim.lr=0.1,-1", f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == \
        ["dropreg.train: error: optim.lr=-1.0: allowed is a number > 0"]
    assert not (tmp_path / "sweep").exists()


def test_the_log_has_a_progress_line_per_evaluation_and_tensorboard_writes_events(data_dir, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "dropreg.train", f"dataset.data_dir={data_dir}", *FAST,
                           "optim.max_updates=60", "trainer.eval_every=20", "logger=tensorboard",
                           f"hydra.run.dir={run}"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in (run / "train.log").read_text().splitlines() if " update " in line]
    assert len(lines) == 3
    assert re.search(r"update 20/60  loss [\d.]+  train [\d.]+%  val [\d.]+%  test [\d.]+%  [\d,]+ upd/s  ETA ",
                     lines[0]), lines[0]
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))


def test_csv_logger_writes_lightnings_csv(make_cfg, tmp_path):
    train(make_cfg(*FAST, "optim.max_updates=40", "trainer.eval_every=20", "logger=csv"), tmp_path)
    rows = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()
    assert "step" in rows[0].split(",") and len(rows) == 3  # a header and one row per evaluation


def test_evaluate_reproduces_a_runs_test_error_and_takes_another_dataset(make_cfg, data_dir, tmp_path, capsys):
    summary = train(make_cfg(*FAST, "optim.max_updates=100", "trainer.eval_every=50"), tmp_path / "run")
    assert evaluate([str(tmp_path / "run"), f"dataset.data_dir={data_dir}"]) == 0
    result = json.loads((tmp_path / "run" / "evaluation" / "mnist5k.json").read_text())
    assert result["test_error"] == summary["test_error"] and result["val_error"] == summary["final_val_error"]
    assert f"test error {summary['test_error']:.2f}%" in capsys.readouterr().out
    assert evaluate([str(tmp_path / "run" / "last.ckpt"), "dataset=fashion_mnist", f"dataset.data_dir={tmp_path}"]) == 2
    assert "fashion_mnist.npz: not found" in capsys.readouterr().err
    assert evaluate([str(tmp_path / "run"), "model.hidden=[32]", f"dataset.data_dir={data_dir}"]) == 2
    assert "the overrides change the trained net (model.hidden:" in capsys.readouterr().err
    assert evaluate([str(tmp_path / "nothing")]) == 2


def test_the_pack_command_reports_one_line_errors(tmp_path, capsys):
    from dropreg.pack import main as pack

    (tmp_path / "spec.json").write_text("{}")
    assert pack([str(tmp_path / "spec.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "spec.json: not a readable pack spec" in err[0]


@pytest.mark.skipif(not (ROOT / "presets" / "demo.yaml").exists(), reason="no demo preset")
def test_the_plan_command_writes_a_spec_or_one_line(tmp_path, capsys, monkeypatch):
    from dropreg.plan import main as plan
    from dropreg.specs import MEMBER_FIELDS, load_spec

    monkeypatch.chdir(tmp_path)  # results/ of its own: a `make demo` here must not select for it

    base = ["--preset", "demo", "--out", str(tmp_path / "new.json")]
    for args, message in ((["--study", "table9", "--pack", "final1", "--overrides", "[x"],
                           "--overrides '[x': not a JSON list"),
                          (["--study", "table9", "--pack", "final9"],
                           "study 'table9' has no pack 'final9'; its packs are tune1, tune2, final1, final2"),
                          (["--study", "tabel9", "--pack", "final1"], "no study 'tabel9'"),
                          (["--study", "table9", "--pack", "final1"], "selected.yaml: not a readable selection")):
        assert plan([*base, *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "new.json").exists()
    assert plan([*base, "--study", "dropout_rate", "--pack", "final1"]) == 0
    spec = load_spec(tmp_path / "new.json")
    assert spec["study"] == "dropout_rate" and all(set(MEMBER_FIELDS) <= set(m) for m in spec["members"])

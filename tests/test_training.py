"""Training runs on the embedded mnist5k, on CPU, in-process (Lightning imports once): what a run
writes, divergence, determinism, resume, ended and replaced runs, and the command line."""

from __future__ import annotations

import filecmp
import json

import pandas as pd
import pytest
import pytorch_lightning as pl
import torch

from conftest import FAST
from dropreg.module import PackedClassifier
from dropreg.train import cli, train


class Interrupted(Exception):
    pass


class InterruptAfter(pl.Callback):
    """Simulates a killed job: raises after k evaluations (their checkpoints are already written)."""

    def __init__(self, k: int) -> None:
        self.k, self.seen = k, 0

    def on_validation_end(self, trainer, pl_module) -> None:
        self.seen += 1
        if self.seen == self.k:
            raise Interrupted


def test_udacity_mlp_learns_mnist5k(make_cfg, tmp_path):
    summary = train(make_cfg(*FAST, "optim.max_updates=600", "trainer.eval_every=200"), tmp_path)
    assert summary["status"] == "completed" and summary["updates"] == 600
    assert summary["test_error"] < 12.0 and summary["best_val_error"] < 15.0
    assert summary["run_id"] == tmp_path.name and summary["pack_size"] == 1
    assert summary["config"]["model"]["name"] == "udacity_mlp"
    assert {"torch", "pytorch-lightning", "python"} <= set(summary["versions"])
    assert summary["device"].startswith("cpu") and len(summary["dataset_md5"]) == 32
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert metrics["update"].tolist() == [200, 400, 600]
    assert {"train/loss", "train/error", "val/error", "test/error", "lr", "momentum"} <= set(metrics)
    assert metrics["test/error"].iloc[-1] == summary["test_error"]
    assert (tmp_path / "config.yaml").is_file()
    ckpt = torch.load(tmp_path / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["dropreg"]["summary"] == summary and ckpt["dropreg"]["update"] == 600
    assert ckpt["hyper_parameters"]["configs"] == [summary["config"]]
    assert not list(tmp_path.glob(".*.tmp"))
    # the checkpoint is a Lightning checkpoint of a pack of one, usable as a model
    model = PackedClassifier.load_from_checkpoint(tmp_path / "last.ckpt", map_location="cpu")
    assert model.members == 1 and model.net.layers[0].weight.shape == (1, 784, 1024)


def test_final_evaluation_when_budget_is_not_a_multiple_of_the_interval(make_cfg, tmp_path):
    summary = train(make_cfg(*FAST, "optim.max_updates=250", "trainer.eval_every=100"), tmp_path)
    assert pd.read_csv(tmp_path / "metrics.csv")["update"].tolist() == [100, 200, 250]
    assert summary["updates"] == 250


def test_penalties_are_logged_separately_and_max_norm_holds(make_cfg, tmp_path):
    summary = train(make_cfg(*FAST, "regularizer=dropout_max_norm", "regularizer.max_norm.radius=1.0",
                             "regularizer.l2.weight=1e-4", "regularizer.l1.weight=1e-5",
                             "optim.max_updates=200", "trainer.eval_every=100"), tmp_path)
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert (metrics["train/penalty_l2"] > 0).all() and (metrics["train/penalty_l1"] > 0).all()
    state = torch.load(tmp_path / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    norms = state["net.layers.0.weight"][0].norm(dim=0)  # [in, out]: a unit's incoming vector is a column
    assert float(norms.max()) <= 1.0 + 1e-5
    assert summary["status"] == "completed"


def test_late_l1_starts_late(make_cfg, tmp_path):
    train(make_cfg(*FAST, "regularizer=l2_l1_late", "optim.max_updates=200", "trainer.eval_every=50"), tmp_path)
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert metrics["train/penalty_l1"].isna().tolist() == [True, True, True, False]  # from update 150 on


def test_divergence_is_recorded_and_exits_zero(data_dir, tmp_path, capsys):
    code = cli([f"dataset.data_dir={data_dir}", *FAST, "optim.lr=1e6", "optim.max_updates=400",
                "trainer.eval_every=100", f"hydra.run.dir={tmp_path}"])
    assert code == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "diverged"
    assert 0 <= summary["diverged_at_update"] < 100
    assert summary["updates"] == 100  # stopped at the first evaluation after the blow-up
    assert "diverged at update" in capsys.readouterr().out


class BreakWeightsAtTheEnd(pl.Callback):
    """Weights made non-finite by the budget's last update (no later loss can notice them)."""

    def on_validation_epoch_start(self, trainer, module) -> None:
        if module.model.update == module.model.max_updates:
            with torch.no_grad():
                next(module.parameters())[0, 0].fill_(float("nan"))


def test_weights_broken_by_the_last_update_are_a_divergence(make_cfg, tmp_path):
    summary = train(make_cfg(*FAST, "optim.max_updates=60", "trainer.eval_every=30"), tmp_path,
                    callbacks=[BreakWeightsAtTheEnd()])
    assert summary["status"] == "diverged" and summary["diverged_at_update"] == 59


def test_a_run_stuck_at_chance_is_marked(make_cfg, tmp_path):
    # lr 1000 with no momentum: the ReLUs die at once and the net predicts one class (90 % error)
    summary = train(make_cfg(*FAST, "optim.lr=1000", "optim.momentum=0", "optim.max_updates=100",
                             "trainer.eval_every=50"), tmp_path)
    assert summary["status"] == "failed_to_learn" and summary["test_error"] >= 81.0


def test_same_seed_gives_identical_metrics_and_resume_matches(make_cfg, tmp_path):
    overrides = [*FAST, "regularizer=dropout_max_norm", "optim.max_updates=500", "trainer.eval_every=100"]
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "interrupted"
    train(make_cfg(*overrides), a)
    train(make_cfg(*overrides), b)
    assert filecmp.cmp(a / "metrics.csv", b / "metrics.csv", shallow=False)

    with pytest.raises(Interrupted):
        train(make_cfg(*overrides), c, callbacks=[InterruptAfter(2)])
    assert pd.read_csv(c / "metrics.csv")["update"].tolist() == [100, 200]
    assert not (c / "summary.json").exists()
    resumed = train(make_cfg(*overrides), c)
    assert filecmp.cmp(a / "metrics.csv", c / "metrics.csv", shallow=False)
    assert resumed["test_error"] == json.loads((a / "summary.json").read_text())["test_error"]

    train(make_cfg(*overrides, "seed=1"), tmp_path / "seed1")
    assert not filecmp.cmp(a / "metrics.csv", tmp_path / "seed1" / "metrics.csv", shallow=False)


def test_ended_run_is_not_redone_and_its_deleted_summary_comes_back(make_cfg, tmp_path):
    overrides = [*FAST, "optim.max_updates=100", "trainer.eval_every=100"]
    first = train(make_cfg(*overrides), tmp_path)
    mtime = (tmp_path / "last.ckpt").stat().st_mtime_ns
    assert train(make_cfg(*overrides, "trainer.threads=1"), tmp_path) == first  # threads: not a new run
    assert (tmp_path / "last.ckpt").stat().st_mtime_ns == mtime
    (tmp_path / "summary.json").unlink()  # as Snakemake does before rerunning a job
    assert train(make_cfg(*overrides), tmp_path) == first
    assert json.loads((tmp_path / "summary.json").read_text()) == first


def test_run_dir_of_another_config_is_kept_aside_and_the_new_run_trains(make_cfg, tmp_path, caplog):
    overrides = [*FAST, "optim.max_updates=100", "trainer.eval_every=100"]
    old = train(make_cfg(*overrides), tmp_path)
    new = train(make_cfg(*overrides, "regularizer=l2"), tmp_path)
    assert new["config"]["regularizer"]["name"] == "l2" and new["status"] == "completed"
    (kept,) = (tmp_path / "replaced").iterdir()
    assert json.loads((kept / "summary.json").read_text()) == old
    assert {"metrics.csv", "last.ckpt", "config.yaml", "REPLACED.txt"} <= {p.name for p in kept.iterdir()}
    assert "regularizer.name: 'none' there, 'l2' now" in (kept / "REPLACED.txt").read_text()
    assert any("held a run of another config" in r.message and "kept it in" in r.message for r in caplog.records)


def test_unprepared_dataset_is_a_one_line_error(tmp_path, capsys):
    code = cli(["dataset=mnist", f"dataset.data_dir={tmp_path}", f"hydra.run.dir={tmp_path / 'run'}"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("dropreg.train: error: ") and "mnist.npz: not found" in err
    assert "python -m dropreg.data prepare mnist" in err

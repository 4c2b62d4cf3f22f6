"""Packed training: a member of a pack trains exactly as it would alone, whoever its pack mates are."""

from __future__ import annotations

import filecmp
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import FAST
from dropreg.bench import bench_overrides, plain_loop
from dropreg.config import PackError
from dropreg.train import train, train_pack
from test_training import InterruptAfter, Interrupted

SHORT = [*FAST, "optim.max_updates=300", "trainer.eval_every=100"]


def _same_rows(a, b, rel: float = 1e-5) -> None:
    """Every metrics.csv row equal to `rel` (losses and errors are bitwise equal on the CPU; logged
    penalty values may differ in their last bits, a reduction split differently across threads)."""
    x, y = pd.read_csv(a / "metrics.csv"), pd.read_csv(b / "metrics.csv")
    assert list(x.columns) == list(y.columns) and len(x) == len(y)
    assert np.allclose(x.to_numpy(), y.to_numpy(), rtol=rel, atol=0, equal_nan=True), (x - y).abs().max()
    exact = [c for c in x.columns if not c.startswith("train/penalty")]
    assert x[exact].equals(y[exact])


def test_members_of_a_pack_match_their_solo_runs(make_cfg, tmp_path):
    configs = [make_cfg(*SHORT), make_cfg(*SHORT, "regularizer=l2", "seed=4"),
               make_cfg(*SHORT, "regularizer=max_norm", "regularizer.max_norm.radius=0.8")]
    packed = train_pack(configs, [tmp_path / "pack" / str(k) for k in range(3)])
    assert [s["pack_size"] for s in packed] == [3, 3, 3]
    for k, config in enumerate(configs):
        solo = train(config, tmp_path / "solo" / str(k))
        _same_rows(tmp_path / "pack" / str(k), tmp_path / "solo" / str(k))
        assert solo["test_error"] == packed[k]["test_error"]


def test_a_pack_of_one_computes_the_plain_loops_updates(data_dir, tmp_path):
    """The benchmark's hand-written loop (nn.Linear, torch.optim.SGD, torch.renorm, plain-Python
    schedules) against the project's path, dropout off, over 100 updates."""
    overrides = bench_overrides("max_norm", 50, str(data_dir), "cpu",
                                ["model=udacity_mlp", "model.init=lecun_normal", "optim=demo", "regularizer.max_norm.radius=1.2",
                                 "regularizer.l2.weight=1e-4"])
    _, losses, model = plain_loop(overrides, torch.device("cpu"), 100)
    from conftest import resolved

    train(resolved(*overrides), tmp_path)
    rows = pd.read_csv(tmp_path / "metrics.csv")
    plain_data_loss = [np.mean(losses[:50]), np.mean(losses[50:])]
    # the plain loop's loss includes the L2 term; the pack logs the data loss and the penalty apart
    packed_loss = (rows["train/loss"] + rows["train/penalty_l2"]).tolist()
    assert packed_loss == pytest.approx(plain_data_loss, rel=1e-5)
    state = torch.load(tmp_path / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    for i, layer in enumerate(model.layers):
        ours = state[f"net.layers.{i}.weight"][0].t()
        plain = layer.weight.detach()
        assert float((ours - plain).norm() / plain.norm()) < 1e-5


def test_a_member_depends_only_on_its_own_config_and_seed(make_cfg, tmp_path):
    dropout = make_cfg(*SHORT, "regularizer=dropout_max_norm", "seed=5")
    train_pack([dropout, make_cfg(*SHORT, "regularizer=l2")], [tmp_path / "a" / "drop", tmp_path / "a" / "l2"])
    train_pack([make_cfg(*SHORT, "regularizer=dropout", "seed=5"), make_cfg(*SHORT, "seed=9", "dataset.train_subset=500"),
                dropout], [tmp_path / "b" / "other", tmp_path / "b" / "none", tmp_path / "b" / "drop"])
    assert filecmp.cmp(tmp_path / "a" / "drop" / "metrics.csv", tmp_path / "b" / "drop" / "metrics.csv", shallow=False)


def test_a_diverging_member_is_retired_and_the_others_go_on(make_cfg, tmp_path):
    good = [make_cfg(*SHORT), make_cfg(*SHORT, "regularizer=dropout", "seed=2")]
    bad = make_cfg(*SHORT, "optim.lr=1e6")
    with_bad = train_pack([good[0], bad, good[1]], [tmp_path / "x" / n for n in ("none", "bad", "drop")])
    assert [s["status"] for s in with_bad] == ["completed", "diverged", "completed"]
    assert with_bad[1]["updates"] == 100
    train_pack(good, [tmp_path / "y" / n for n in ("none", "drop")])
    for name in ("none", "drop"):
        assert filecmp.cmp(tmp_path / "x" / name / "metrics.csv", tmp_path / "y" / name / "metrics.csv", shallow=False)


def test_a_killed_pack_resumes_to_the_same_results(make_cfg, tmp_path):
    configs = [make_cfg(*SHORT, "regularizer=dropout_max_norm"), make_cfg(*SHORT, "regularizer=l2_kl_sparsity")]
    names = ["dmn", "kl"]
    train_pack(configs, [tmp_path / "full" / n for n in names])
    with pytest.raises(Interrupted):
        train_pack(configs, [tmp_path / "cut" / n for n in names], callbacks=[InterruptAfter(2)])
    train_pack(configs, [tmp_path / "cut" / n for n in names])
    for n in names:
        assert filecmp.cmp(tmp_path / "full" / n / "metrics.csv", tmp_path / "cut" / n / "metrics.csv", shallow=False)


def test_a_member_further_ahead_waits_and_joins_when_the_pack_gets_there(make_cfg, tmp_path):
    """A pack regrouped after an interruption: one run resumes at update 200, its new pack mate
    starts from scratch; both end as if never interrupted."""
    a, b = make_cfg(*SHORT, "regularizer=dropout", "seed=1"), make_cfg(*SHORT, "regularizer=l2", "seed=2")
    train_pack([a, b], [tmp_path / "full" / "a", tmp_path / "full" / "b"])
    with pytest.raises(Interrupted):
        train_pack([a, b], [tmp_path / "cut" / "a", tmp_path / "cut" / "b"], callbacks=[InterruptAfter(2)])
    shutil.rmtree(tmp_path / "cut" / "b")
    train_pack([b, a], [tmp_path / "cut" / "b", tmp_path / "cut" / "a"])
    for n in ("a", "b"):
        assert filecmp.cmp(tmp_path / "full" / n / "metrics.csv", tmp_path / "cut" / n / "metrics.csv", shallow=False)


def test_runs_that_cannot_share_a_pack_are_refused_naming_the_key(make_cfg, tmp_path):
    with pytest.raises(PackError, match=r"optim\.batch_size: 100 in .*a, 50 in .*b"):
        train_pack([make_cfg(*SHORT), make_cfg(*SHORT, "optim.batch_size=50")], [tmp_path / "a", tmp_path / "b"])
    assert not (tmp_path / "a").exists()


class _ReplayEagerly:
    """Stands in for a captured CUDA graph on the CPU: a replay is one eager update."""

    def __init__(self, update) -> None:
        self.update = update

    def replay(self) -> None:
        self.update()


def test_the_graph_path_warm_up_leaves_no_trace(make_cfg, tmp_path, monkeypatch):
    """What the CUDA-graph path does around its capture (warm-up updates, then putting weights,
    momenta, statistics, counters and dropout generators back), checked on the CPU: with the capture
    replaced by eager replays, results equal the eager path's bit for bit."""
    from dropreg import module, update

    configs = [make_cfg(*SHORT, "regularizer=dropout_max_norm", "seed=1"), make_cfg(*SHORT, "regularizer=l2_kl_sparsity")]
    train_pack(configs, [tmp_path / "eager" / "a", tmp_path / "eager" / "b"])
    captures = []
    monkeypatch.setattr(update.PackUpdate, "_record", lambda self: captures.append(1) or _ReplayEagerly(self))
    real_init = module.PackUpdate.__init__
    monkeypatch.setattr(module.PackUpdate, "__init__", lambda self, m, x, y, use_graph: real_init(self, m, x, y, True))
    train_pack(configs, [tmp_path / "graph" / "a", tmp_path / "graph" / "b"])
    assert captures == [1]  # captured once, replayed for every update
    for n in ("a", "b"):
        assert filecmp.cmp(tmp_path / "eager" / n / "metrics.csv", tmp_path / "graph" / n / "metrics.csv", shallow=False)


def test_benchmark_json_has_what_the_readme_reports(data_dir, capsys):
    import json

    from dropreg.bench import main

    main(["--device", "cpu", "--packs", "1", "2", "--updates", "2", "--repeats", "1", "--data-dir", str(data_dir),
          "--json"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["packed_ms_per_run_update"]) == {"1", "2"} and result["plain_ms_per_update"] > 0
    assert result["device"].startswith("cpu") and result["packed_loop_ms_per_run_update"]["2"] > 0

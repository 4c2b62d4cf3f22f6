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
from dropreg.identity import PackError
from dropreg.train import train, train_pack
from test_training import InterruptAfter, Interrupted

SHORT = [*FAST, "optim.max_updates=300", "trainer.eval_every=100"]


@pytest.fixture
def one_thread():
    """Bitwise equality holds on one CPU thread: with several, MKL splits a lone GEMM (a pack of one)
    differently from a batched one, last-bit differences that 300 updates amplify (measured on a
    2-core AVX-512 machine: 6e-5 on a 100x784x1024 forward, test errors 0.3 points apart)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _same_rows(a, b, rel: float = 1e-5) -> None:
    """Every metrics.csv row equal to `rel` (losses and errors are bitwise equal on one CPU thread;
    logged penalty values may differ in their last bits, a reduction split differently)."""
    x, y = pd.read_csv(a / "metrics.csv"), pd.read_csv(b / "metrics.csv")
    assert list(x.columns) == list(y.columns) and len(x) == len(y)
    assert np.allclose(x.to_numpy(), y.to_numpy(), rtol=rel, atol=0, equal_nan=True), (x - y).abs().max()
    exact = [c for c in x.columns if not c.startswith("train/penalty")]
    assert x[exact].equals(y[exact])


def test_members_of_a_pack_match_their_solo_runs(make_cfg, tmp_path, one_thread):
    configs = [make_cfg(*SHORT), make_cfg(*SHORT, "regularizer=l2", "seed=4"),
               make_cfg(*SHORT, "regularizer=max_norm", "regularizer.max_norm.radius=0.8")]
    packed = train_pack(configs, [tmp_path / "pack" / str(k) for k in range(3)])
    assert [s["pack_size"] for s in packed] == [3, 3, 3]
    for k, config in enumerate(configs):
        solo = train(config, tmp_path / "solo" / str(k))
        _same_rows(tmp_path / "pack" / str(k), tmp_path / "solo" / str(k))
        assert solo["test_error"] == packed[k]["test_error"]


def test_members_with_their_own_lr_and_momentum_schedules_match_their_solo_runs(make_cfg, tmp_path, one_thread):
    """The demo's Table 9 packs mix lr 0.2 and 0.8; members here differ in lr, in the lr schedule
    and its decay, and in the momentum schedule, ramp and values, with regularizers of every kind."""
    configs = [make_cfg(*SHORT, "regularizer=dropout_max_norm", "optim.lr=0.2"),
               make_cfg(*SHORT, "regularizer=l2_l1_late", "optim.lr=0.8", "seed=2"),
               make_cfg(*SHORT, "regularizer=l2_kl_sparsity", "optim.lr_schedule=constant", "optim.momentum=0.9",
                        "optim.momentum_schedule=constant", "seed=3"),
               make_cfg(*SHORT, "regularizer=dropout_l2", "optim.lr_decay_updates=50", "optim.momentum=0.2",
                        "optim.final_momentum=0.99", "optim.momentum_ramp_updates=30", "seed=4")]
    packed = train_pack(configs, [tmp_path / "pack" / str(k) for k in range(4)])
    rows = [pd.read_csv(tmp_path / "pack" / str(k) / "metrics.csv") for k in range(4)]
    assert len({round(r["lr"].iloc[0], 6) for r in rows}) == 4 and len({round(r["momentum"].iloc[0], 6) for r in rows}) == 3
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
    assert rows["train/loss"].tolist() == pytest.approx(plain_data_loss, rel=1e-5)
    # the weight penalty is logged at the evaluation's weights: λ Σ w² of the plain net at its end
    l2 = 1e-4 * sum(float(layer.weight.square().sum()) for layer in model.layers)
    assert rows["train/penalty_l2"].iloc[-1] == pytest.approx(l2, rel=1e-4)
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


class _StandInGraph:
    """Stands in for a captured CUDA graph on the CPU: a replay is one eager update (optionally
    followed by a perturbation of the weights, a graph that computes something else)."""

    def __init__(self, update, perturb: bool = False) -> None:
        self.update, self.perturb = update, perturb

    def replay(self) -> None:
        self.update()
        if self.perturb:
            import torch

            with torch.no_grad():
                self.update.model.net.layers[0].weight.mul_(1.01)


def _graph_on_cpu(monkeypatch, record):
    """Train with the graph path on the CPU, `record(update)` standing in for the capture."""
    from dropreg import module, update

    captures = []

    def fake_record(self):
        captures.append(1)
        return record(self)

    monkeypatch.setattr(update.PackUpdate, "_record", fake_record)
    real_init = module.PackUpdate.__init__
    monkeypatch.setattr(module.PackUpdate, "__init__",
                        lambda self, m, x, y, use_graph, why_not="": real_init(self, m, x, y, True))
    return captures


GRAPH_PACK = [("dropout_max_norm", 1), ("l2_kl_sparsity", 2), ("l2_l1_late", 3)]


def _graph_pack(make_cfg):
    return [make_cfg(*SHORT, f"regularizer={r}", f"seed={s}") for r, s in GRAPH_PACK]


def test_the_graph_path_warm_up_and_check_leave_no_trace(make_cfg, tmp_path, monkeypatch):
    """What the CUDA-graph path does around its capture, checked on the CPU with a stand-in graph
    (this cannot catch what only a real capture does, such as a host sync or a value frozen at
    capture: `make gpu-check` does that): the warm-up updates are undone and the first block is
    replayed, recomputed eagerly and compared, so the results equal the eager path's bit for bit."""
    configs = _graph_pack(make_cfg)
    train_pack(configs, [tmp_path / "eager" / str(k) for k in range(3)])
    captures = _graph_on_cpu(monkeypatch, lambda step: _StandInGraph(step))
    summaries = train_pack(configs, [tmp_path / "graph" / str(k) for k in range(3)])
    assert captures == [1]  # captured once, replayed for every update
    assert all(s["cuda_graph"] is True and s["cuda_graph_reason"] is None for s in summaries)
    for k in range(3):
        assert filecmp.cmp(tmp_path / "eager" / str(k) / "metrics.csv", tmp_path / "graph" / str(k) / "metrics.csv",
                           shallow=False)


def test_a_failed_capture_falls_back_to_eager_with_one_line(make_cfg, tmp_path, monkeypatch, caplog):
    configs = _graph_pack(make_cfg)
    train_pack(configs, [tmp_path / "eager" / str(k) for k in range(3)])

    def broken(step):
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing")

    _graph_on_cpu(monkeypatch, broken)
    summaries = train_pack(configs, [tmp_path / "graph" / str(k) for k in range(3)])
    lines = [r.message for r in caplog.records if "CUDA graph off" in r.message]
    assert len(lines) == 1 and "capture failed: RuntimeError: CUDA error" in lines[0] and "\n" not in lines[0]
    assert all(s["cuda_graph"] is False and s["cuda_graph_reason"].startswith("capture failed") for s in summaries)
    for k in range(3):  # the warm-up before the failed capture was undone too
        assert filecmp.cmp(tmp_path / "eager" / str(k) / "metrics.csv", tmp_path / "graph" / str(k) / "metrics.csv",
                           shallow=False)


def test_a_graph_that_replays_something_else_is_caught_by_the_check(make_cfg, tmp_path, monkeypatch, caplog):
    configs = _graph_pack(make_cfg)
    train_pack(configs, [tmp_path / "eager" / str(k) for k in range(3)])
    _graph_on_cpu(monkeypatch, lambda step: _StandInGraph(step, perturb=True))
    summaries = train_pack(configs, [tmp_path / "graph" / str(k) for k in range(3)])
    (line,) = [r.message for r in caplog.records if "CUDA graph off" in r.message]
    assert "replayed updates differ from eager ones" in line
    assert all(s["cuda_graph"] is False and "differ" in s["cuda_graph_reason"] for s in summaries)
    for k in range(3):  # the eager recomputation is what the runs kept
        assert filecmp.cmp(tmp_path / "eager" / str(k) / "metrics.csv", tmp_path / "graph" / str(k) / "metrics.csv",
                           shallow=False)


def test_generators_are_registered_explicitly_only_before_torch_2_14(monkeypatch):
    from dropreg import update

    class Graph:
        def __init__(self):
            self.registered = []

        def register_generator_state(self, gen):
            self.registered.append(gen)

    gens = [object(), object()]
    for version, expected in (("2.13.0+cu126", gens), ("2.14.1", []), ("3.0.0", [])):
        monkeypatch.setattr(update.torch, "__version__", version)
        graph = Graph()
        update.register_generators(graph, gens)
        assert graph.registered == expected, version


def test_benchmark_json_has_the_mixed_pack_and_the_roofline(data_dir, capsys):
    import json
    import math

    from dropreg.bench import main

    main(["--device", "cpu", "--packs", "1", "2", "--mixed", "3", "--updates", "2", "--repeats", "1",
          "--data-dir", str(data_dir), "--json"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["packed_ms_per_run_update"]) == {"1", "2"} and result["device"].startswith("cpu")
    roof = result["roofline"]
    figures = [result["plain_ms_per_update"], *result["packed_ms_per_run_update"].values(),
               result["packed_loop_ms_per_run_update"]["2"], result["mixed_ms_per_run_update"]["3"],
               roof["gemm_gflops"], roof["copy_gbs"], roof["flops_per_run_update"], roof["bytes_per_run_update"],
               roof["floor_ms_per_run_update"], *result["fraction_of_floor"]["packed"].values(),
               result["fraction_of_floor"]["mixed"]["3"], result["fraction_of_floor"]["plain"]]
    assert all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in figures), figures
    assert [v["variant"] for v in result["variants"]] == ["fp32"]
    # 2 x 784x1024 + ... : the paper net's FLOPs per run-update at batch 100 (about 2.2 GFLOP)
    assert 2.0e9 < roof["flops_per_run_update"] < 2.5e9


def test_the_benchmark_leaves_torch_as_it_found_it(data_dir):
    """Training turns deterministic algorithms on for its fit only; the benchmark's loops set their
    own mode and put it back (a leak once made later repeats run in another mode)."""
    from dropreg.bench import bench_overrides, packed, pack_configs

    torch.use_deterministic_algorithms(False)
    packed(pack_configs(bench_overrides("none", 2, str(data_dir), "cpu", ["model=demo_mlp"]), 1), 2)
    assert not torch.are_deterministic_algorithms_enabled()
    plain_loop(bench_overrides("none", 2, str(data_dir), "cpu", ["model=demo_mlp"]), torch.device("cpu"), 4)
    assert not torch.are_deterministic_algorithms_enabled()


def test_each_regularizer_records_whether_it_acts(make_cfg, tmp_path):
    """summary.regularizer_activity (and the reg/ columns of metrics.csv): a max-norm radius below
    the units' norms binds every unit, one far above binds none (that run is unregularized); L1
    raises the fraction of near-zero weights above the unregularized run's; KL records the mean
    activity its penalty pulls towards ρ."""
    configs = [make_cfg(*SHORT), make_cfg(*SHORT, "regularizer=max_norm", "regularizer.max_norm.radius=0.3"),
               make_cfg(*SHORT, "regularizer=max_norm", "regularizer.max_norm.radius=50"),
               make_cfg(*SHORT, "regularizer=l1", "regularizer.l1.weight=0.001"),
               make_cfg(*SHORT, "regularizer=l2_kl_sparsity", "regularizer.kl_sparsity.weight=0.1")]
    none, tight, loose, l1, kl = (s["regularizer_activity"] for s in
                                  train_pack(configs, [tmp_path / str(k) for k in range(5)]))
    assert set(none) == {"weights_near_zero"} and set(l1) == {"weights_near_zero"}
    assert tight["units_at_max_norm"] > 0.5 and loose["units_at_max_norm"] == 0.0  # dead units shrink below
    assert l1["weights_near_zero"] > 2 * none["weights_near_zero"] > 0
    assert 0 < kl["kl_sparsity_mean_activity"] < 1
    assert "reg/units_at_max_norm" in pd.read_csv(tmp_path / "1" / "metrics.csv").columns

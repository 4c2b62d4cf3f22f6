"""On a CUDA GPU (`make test-gpu`): packs train there as captured CUDA graphs, replaying exactly
what the eager path computes, and resume exactly."""

from __future__ import annotations

import filecmp

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import FAST
from test_training import InterruptAfter, Interrupted

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")]

GPU = [*FAST, "trainer=gpu", "model=paper_mlp", "optim.max_updates=600", "trainer.eval_every=200"]


def test_graph_replays_compute_what_eager_updates_compute(make_cfg, tmp_path):
    from dropreg.train import train_pack

    def pack(graph: str, where):
        configs = [make_cfg(*GPU, f"trainer.cuda_graph={graph}", "regularizer=dropout_max_norm", "seed=1"),
                   make_cfg(*GPU, f"trainer.cuda_graph={graph}", "regularizer=l2_kl_sparsity", "seed=2"),
                   make_cfg(*GPU, f"trainer.cuda_graph={graph}", "regularizer=l2_l1_late", "seed=3")]
        return train_pack(configs, [where / str(k) for k in range(3)])

    graph = pack("on", tmp_path / "graph")
    pack("off", tmp_path / "eager")
    assert all(s["device"].startswith("cuda") and s["status"] == "completed" for s in graph)
    assert graph[0]["test_error"] < 15.0
    for k in range(3):
        a, b = (pd.read_csv(tmp_path / w / str(k) / "metrics.csv") for w in ("graph", "eager"))
        assert np.allclose(a.to_numpy(), b.to_numpy(), rtol=1e-5, equal_nan=True), (a - b).abs().max()


def test_training_on_gpu_resumes_exactly(make_cfg, tmp_path):
    from dropreg.train import train

    overrides = [*GPU, "regularizer=dropout_max_norm"]
    train(make_cfg(*overrides), tmp_path / "a")
    with pytest.raises(Interrupted):
        train(make_cfg(*overrides), tmp_path / "b", callbacks=[InterruptAfter(2)])
    train(make_cfg(*overrides), tmp_path / "b")
    assert filecmp.cmp(tmp_path / "a" / "metrics.csv", tmp_path / "b" / "metrics.csv", shallow=False)


def test_a_diverging_member_does_not_disturb_a_graph(make_cfg, tmp_path):
    from dropreg.train import train_pack

    runs = [make_cfg(*GPU, "optim.lr=1e6"), make_cfg(*GPU, "regularizer=dropout", "seed=2")]
    out = train_pack(runs, [tmp_path / "bad", tmp_path / "good"])
    assert [s["status"] for s in out] == ["diverged", "completed"]
    alone = train_pack(runs[1:], [tmp_path / "alone"])
    assert alone[0]["test_error"] == pytest.approx(out[1]["test_error"], abs=0.2)

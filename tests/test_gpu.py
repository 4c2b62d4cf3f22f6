"""On a CUDA GPU (`make test-gpu`): training runs there, keeps data on the device, resumes exactly."""

from __future__ import annotations

import filecmp

import pytest
import torch

from conftest import FAST
from test_training import InterruptAfter, Interrupted

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")]


def test_training_on_gpu_resumes_exactly(make_cfg, tmp_path):
    from dropreg.train import train

    overrides = [*FAST, "trainer=gpu", "regularizer=dropout_max_norm", "model=paper_mlp",
                 "optim.max_updates=400", "trainer.eval_every=100"]
    full = train(make_cfg(*overrides), tmp_path / "a")
    assert full["device"].startswith("cuda") and full["status"] == "completed"
    assert full["test_error"] < 15.0
    with pytest.raises(Interrupted):
        train(make_cfg(*overrides), tmp_path / "b", callbacks=[InterruptAfter(2)])
    train(make_cfg(*overrides), tmp_path / "b")
    assert filecmp.cmp(tmp_path / "a" / "metrics.csv", tmp_path / "b" / "metrics.csv", shallow=False)

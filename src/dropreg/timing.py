"""The packed update timed on its own, without Lightning: what the benchmark, the preset estimate
and the GPU check all measure, in one place so their numbers are of the same loop."""

from __future__ import annotations

import contextlib
import time

import torch

from .batches import PackBatches
from .schema import validate
from .data.datamodule import PreparedDataModule


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously; a timer must not stop early)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def torch_mode(settings, device: torch.device):
    """What training sets around its updates: deterministic algorithms, the matmul precision, bf16
    autocast for bf16-mixed; put back afterwards."""
    t = settings.trainer
    saved = torch.are_deterministic_algorithms_enabled(), torch.get_float32_matmul_precision()
    torch.use_deterministic_algorithms(t.deterministic)
    torch.set_float32_matmul_precision(t.matmul_precision)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if t.precision == "bf16-mixed"
                else contextlib.nullcontext())
    try:
        with autocast:
            yield
    finally:
        torch.use_deterministic_algorithms(saved[0])
        torch.set_float32_matmul_precision(saved[1])


def bare_loop(configs: list[dict], updates: int, device: torch.device, use_graph: bool,
              data: tuple[torch.Tensor, torch.Tensor] | None = None):
    """ms per run-update of the packed update driven by a bare loop, no Lightning: `updates` warm-up
    updates (and the capture and check of the CUDA graph), then `updates` timed ones. `data`: the
    training tensors (default: the configs' prepared dataset). Returns (ms, the PackUpdate)."""
    from .model import PackModel
    from .update import PackUpdate

    settings = [validate(c) for c in configs]
    model = PackModel(settings).to(device)
    model.make_optimizer()
    model.join(0)
    if data is None:
        dm = PreparedDataModule(settings[0].dataset, settings[0].trainer.eval_batch_size)
        dm.check(settings)
        dm.setup(device=device)
        data = dm.tensors["train"]
    x, y = data
    batches = PackBatches([len(y)] * len(settings), model.batch_size, model.seeds)
    step = PackUpdate(model, x, y, use_graph=use_graph)
    with torch_mode(settings[0], device):
        model.dropout.reseed(model.seeds, 0)
        step.run(0, updates, batches.indices)
        sync(device)
        start = time.perf_counter()
        step.run(updates, updates, batches.indices)
        sync(device)
    return 1000.0 * (time.perf_counter() - start) / (updates * len(settings)), step

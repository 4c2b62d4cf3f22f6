"""What a device can do and what one run-update needs: the floor a packed update is measured against.

A run-update of an MLP at batch B with P weights (W of them in weight matrices) needs
- FLOPs: 2·B·W forward, 2·B·W for the weight gradients, 2·B·W' for the gradients of every layer's
  input but the first (W' = the weights of layers 2..L), so ≈ 6·B·W;
- bytes (the unavoidable traffic, float32): the weights read for the forward and again for the
  backward pass, the gradients written and read once, the weights and the momenta read and written
  once: 8 · 4 · P.
The floor of a run-update is the larger of FLOPs / (the device's measured GEMM rate) and bytes /
(its measured copy bandwidth); a measured time is reported also as floor / time (1.0 = at the floor).
"""

from __future__ import annotations

import time

import torch

from .timing import sync


def gemm_gflops(device: torch.device, dtype: torch.dtype = torch.float32, n: int | None = None, repeats: int = 5) -> float:
    """Measured rate of one large square matrix product, GFLOP/s (in the current matmul precision)."""
    n = n or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def copy_gbs(device: torch.device, mbytes: int | None = None, repeats: int = 10) -> float:
    """Measured bandwidth of a large device-to-device copy, GB/s (bytes read + bytes written)."""
    mbytes = mbytes or (2048 if device.type == "cuda" else 256)
    x = torch.empty(mbytes * 2**20 // 4, device=device)
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        y.copy_(x)
    sync(device)
    return 2 * x.numel() * 4 * repeats / (time.perf_counter() - start) / 1e9


def update_cost(widths: list[int], batch_size: int) -> dict[str, float]:
    """FLOPs and bytes of one run-update of an MLP with these layer widths (see the module docstring)."""
    layers = list(zip(widths[:-1], widths[1:]))
    weights = sum(a * b for a, b in layers)
    later = sum(a * b for a, b in layers[1:])
    params = weights + sum(b for _, b in layers)
    return {"flops": 2.0 * batch_size * (2 * weights + later), "bytes": 8.0 * 4 * params, "parameters": params}


def floor_ms(cost: dict[str, float], gflops: float, gbs: float) -> float:
    """The run-update's floor in ms on a device with this GEMM rate and bandwidth."""
    return 1000.0 * max(cost["flops"] / (gflops * 1e9), cost["bytes"] / (gbs * 1e9))


def measure(device: torch.device, widths: list[int], batch_size: int) -> dict[str, float]:
    """The device's roofline for this net: rates, the run-update's needs and its floor."""
    gflops, gbs = gemm_gflops(device), copy_gbs(device)
    cost = update_cost(widths, batch_size)
    return {"gemm_gflops": round(gflops, 1), "copy_gbs": round(gbs, 1), "flops_per_run_update": cost["flops"],
            "bytes_per_run_update": cost["bytes"], "floor_ms_per_run_update": round(floor_ms(cost, gflops, gbs), 4)}

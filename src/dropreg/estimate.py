"""What a preset's plan costs on this device, before it runs (`python -m dropreg.bench --estimate`).

Every pack the preset expands to (tuning and final, as `snakemake -n` lists them) is timed for a few
updates on this device with its own members (architecture, batch size, pack size and each member's
regularizer; the learning rates tuning will select do not change the cost), on synthetic data of
the dataset's shape, through the real packed update (`timing.bare_loop`; on CUDA with the graph
when the preset's trainer uses one). Its hours are that time per update times its budget.
Evaluations (a forward pass of each member over the validation and test images every
`trainer.eval_every` updates: under 1 % of an interval for the paper preset), data preparation and
figures are not counted. Packs run one after another on one device; on a cluster they spread.
"""

from __future__ import annotations

import json
from typing import Any

import torch

from .regularizers import NEEDS


def _members_key(pack) -> str:
    first = pack.runs[0].config
    needs = sorted(tuple(name for name, need in NEEDS.items() if need(_reg(r.config))) for r in pack.runs)
    return json.dumps([first["model"]["hidden"], first["dataset"]["input_dim"], first["optim"]["batch_size"],
                       first["trainer"]["precision"], first["trainer"]["matmul_precision"], needs])


def _reg(config: dict):
    from .schema import validate

    return validate(config).regularizer


def measure_pack(pack, device: torch.device, updates: int) -> float:
    """ms per pack-update of this pack's members on this device."""
    from .timing import bare_loop

    configs = [r.config for r in pack.runs]
    d = configs[0]["dataset"]
    n = max(2000, configs[0]["optim"]["batch_size"])
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, d["input_dim"], generator=gen).to(device)
    y = torch.randint(0, d["num_classes"], (n,), generator=gen).to(device)
    use_graph = device.type == "cuda" and configs[0]["trainer"]["cuda_graph"] != "off"
    ms_per_run_update, _ = bare_loop(configs, updates, device, use_graph, data=(x, y))
    return ms_per_run_update * len(configs)


def estimate(preset: str, overrides: list[str], device: torch.device, updates: int | None = None) -> dict[str, Any]:
    """Per study and stage: packs, runs, run-updates, measured ms per run-update, hours."""
    from . import pipeline

    pipe = pipeline.load({"preset": preset, "overrides": overrides})
    updates = updates or (200 if device.type == "cuda" else 3)
    measured: dict[str, float] = {}
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for pack in pipe.packs:
        key = _members_key(pack) + f"|{len(pack.runs)}"
        if key not in measured:
            measured[key] = measure_pack(pack, device, updates)
        budget = pack.runs[0].config["optim"]["max_updates"]
        row = rows.setdefault((pack.study, pack.stage), {"study": pack.study, "stage": pack.stage, "packs": 0, "runs": 0,
                                                         "run_updates": 0, "hours": 0.0})
        row["packs"] += 1
        row["runs"] += len(pack.runs)
        row["run_updates"] += budget * len(pack.runs)
        row["hours"] += measured[key] * budget / 3.6e6
    for row in rows.values():
        row["ms_per_run_update"] = round(3.6e6 * row["hours"] / row["run_updates"], 4)
        row["hours"] = round(row["hours"], 3)
    table = list(rows.values())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    return {"preset": pipe.preset, "device": name, "timed_updates_per_pack": updates, "studies": table,
            "total_run_updates": sum(r["run_updates"] for r in table),
            "total_hours": round(sum(r["hours"] for r in table), 3)}


def main(preset: str, overrides: list[str], device: torch.device, as_json: bool) -> int:
    from .pipeline import PipelineConfigError

    try:
        result = estimate(preset, overrides, device)
    except PipelineConfigError as exc:
        print(f"dropreg.bench: error: {exc}")
        return 2
    if as_json:
        print(json.dumps(result))
        return 0
    print(f"preset {result['preset']} on {result['device']} (each pack timed for {result['timed_updates_per_pack']} "
          f"updates; updates only, evaluations not counted):")
    print(f"  {'study':<18} {'stage':<6} {'packs':>5} {'runs':>5} {'run-updates':>13} {'ms/run-update':>14} {'hours':>9}")
    for r in result["studies"]:
        print(f"  {r['study']:<18} {r['stage']:<6} {r['packs']:>5} {r['runs']:>5} {r['run_updates']:>13,} "
              f"{r['ms_per_run_update']:>14.3f} {r['hours']:>9.2f}")
    print(f"  {'total':<18} {'':<6} {'':>5} {'':>5} {result['total_run_updates']:>13,} {'':>14} {result['total_hours']:>9.2f}")
    return 0

"""`make gpu-check` on the CPU: everything it calls that can run without a GPU (the mixed pack's
graph-vs-eager and resume checks with the graph off on both sides, the summary it writes). The
graph itself is only exercised on a GPU."""

from __future__ import annotations

import json

from dropreg.gpu_check import main


def test_gpu_check_dry_run_on_the_cpu(tmp_path):
    code = main(["--device", "cpu", "--out", str(tmp_path), "--precisions", "fp32", "--interval", "4",
                 "--skip-bench", "--skip-pytest"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    (pack,) = summary["packs"]
    assert code == 0 and summary["passed"] and pack["passed"]
    assert pack["graph_vs_eager_max_rel_difference"] == 0.0 and pack["resumed_equals_straight"]
    assert pack["statuses"] == ["completed"] * 8 and pack["updates"] == 8
    assert "rng_replay" not in summary  # needs CUDA

"""The select stage on fixture tuning results: what it picks, ties, and candidates that never win."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from dropreg.select import main
from dropreg.specs import load_selection


def _config(lr: float, l2: float = 0.0) -> dict:
    from conftest import resolved

    return resolved(f"optim.lr={lr}", f"regularizer.l2.weight={l2}", "regularizer=l2" if l2 else "regularizer=none")


def _tuning(tmp_path, runs: list[tuple]) -> str:
    """runs: (regularizer, {key: value}, seed, status, final_val_error, best_val_error[, largest_val_rise])."""
    members = []
    for reg, candidate, seed, status, final_val, best_val, *rise in runs:
        run_id = f"{reg}-" + "-".join(f"{k}{v}" for k, v in candidate.items()) + f"-seed{seed}"
        run_dir = tmp_path / "tuning" / run_id
        run_dir.mkdir(parents=True)
        config = _config(candidate.get("optim.lr", 0.1), candidate.get("regularizer.l2.weight", 0.0))
        (run_dir / "summary.json").write_text(json.dumps({
            "run_id": run_id, "status": status, "test_error": 5.0, "final_val_error": final_val,
            "best_val_error": best_val, "updates": 100, "config": config,
            "diverged_at_update": 50 if status == "diverged" else None,
            **({"largest_val_rise": rise[0]} if rise else {})}))
        members.append({"run_id": run_id, "run_dir": str(run_dir), "regularizer": reg, "seed": seed,
                        "candidate": candidate, "config": config})
    spec = tmp_path / "tune1.json"
    spec.write_text(json.dumps({"study": "table9", "members": members}))
    return str(spec)


def _select(tmp_path, spec) -> tuple[int, dict, pd.DataFrame]:
    code = main(["--study", "table9", "--selected", str(tmp_path / "selected.yaml"), "--table",
                 str(tmp_path / "tuning.csv"), spec])
    if code:
        return code, {}, pd.DataFrame()
    return code, load_selection(tmp_path / "selected.yaml"), pd.read_csv(tmp_path / "tuning.csv")


def test_lowest_mean_validation_error_wins_and_diverged_never_does(tmp_path):
    spec = _tuning(tmp_path, [
        ("none", {"optim.lr": 0.03}, 1, "completed", 3.0, 2.9),
        ("none", {"optim.lr": 0.03}, 2, "completed", 3.4, 3.0),  # mean 3.2
        ("none", {"optim.lr": 0.1}, 1, "completed", 2.0, 1.9),
        ("none", {"optim.lr": 0.1}, 2, "completed", 4.0, 3.0),  # mean 3.0: the winner
        ("none", {"optim.lr": 0.3}, 1, "diverged", None, None),
        ("none", {"optim.lr": 0.3}, 2, "completed", 1.0, 1.0),  # best seed, but a seed diverged
        ("l2", {"optim.lr": 0.1, "regularizer.l2.weight": 0.001}, 1, "failed_to_learn", 90.0, 90.0),
        ("l2", {"optim.lr": 0.1, "regularizer.l2.weight": 0.0001}, 1, "completed", 2.5, 2.4),
    ])
    code, selection, table = _select(tmp_path, spec)
    assert code == 0
    assert selection["none"]["selected"] == {"optim.lr": 0.1} and selection["none"]["overrides"] == ["optim.lr=0.1"]
    assert selection["none"]["mean_val_error"] == pytest.approx(3.0)
    assert selection["l2"]["overrides"] == ["optim.lr=0.1", "regularizer.l2.weight=0.0001"]
    assert len(selection["none"]["candidates"]) == 3  # every candidate is reported with its errors
    assert table["chosen"].sum() == 2 + 1  # both seeds of the chosen `none`, and the `l2` run
    assert set(table.columns) >= {"lr", "l2_weight", "status", "final_val_error", "chosen"}
    assert yaml.safe_load((tmp_path / "selected.yaml").read_text())["criterion"].startswith("lowest mean final")


def test_ties_go_to_the_lower_best_error_then_to_the_first_candidate(tmp_path):
    spec = _tuning(tmp_path, [
        ("none", {"optim.lr": 0.03}, 1, "completed", 2.0, 1.8),
        ("none", {"optim.lr": 0.1}, 1, "completed", 2.0, 1.5),  # same final, lower best: wins
        ("l2", {"optim.lr": 0.1, "regularizer.l2.weight": 0.001}, 1, "completed", 2.0, 1.5),  # listed first: wins
        ("l2", {"optim.lr": 0.1, "regularizer.l2.weight": 0.0001}, 1, "completed", 2.0, 1.5),
    ])
    _, selection, _ = _select(tmp_path, spec)
    assert selection["none"]["selected"] == {"optim.lr": 0.1}
    assert selection["l2"]["selected"]["regularizer.l2.weight"] == 0.001


def test_every_candidate_diverged_stops_the_study_in_one_line(tmp_path, capsys):
    spec = _tuning(tmp_path, [
        ("none", {"optim.lr": 0.1}, 1, "completed", 2.0, 1.9),
        ("l2", {"optim.lr": 0.3, "regularizer.l2.weight": 0.001}, 1, "diverged", None, None),
        ("l2", {"optim.lr": 1.0, "regularizer.l2.weight": 0.001}, 1, "failed_to_learn", 90.0, 90.0),
    ])
    code, _, _ = _select(tmp_path, spec)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert err[0].startswith("dropreg.select: error: study table9: every tuning candidate of l2 diverged or failed")
    assert "1 diverged" in err[0] and "1 failed_to_learn" in err[0]
    assert not (tmp_path / "selected.yaml").exists()


def test_a_candidate_whose_validation_error_spiked_loses_to_a_steady_one(tmp_path):
    """lr 0.8 ends lower on seed 1 but its validation error rose 3 points on the way (the demo's
    L2 + L1 late case): the steady lr 0.2 is selected; among spiking candidates the usual rule holds."""
    spec = _tuning(tmp_path, [
        ("none", {"optim.lr": 0.2}, 1, "completed", 5.9, 5.8, 0.4),
        ("none", {"optim.lr": 0.8}, 1, "completed", 5.5, 5.3, 3.0),
        ("l2", {"optim.lr": 0.1, "regularizer.l2.weight": 0.001}, 1, "completed", 5.0, 4.0, 2.0),
        ("l2", {"optim.lr": 0.1, "regularizer.l2.weight": 0.0001}, 1, "completed", 4.5, 4.0, 1.5),
    ])
    _, selection, _ = _select(tmp_path, spec)
    assert selection["none"]["selected"] == {"optim.lr": 0.2}
    assert [c["spiked"] for c in selection["none"]["candidates"]] == [False, True]
    assert selection["l2"]["selected"]["regularizer.l2.weight"] == 0.0001


def test_largest_rise_measures_a_spike_the_final_value_hides():
    from dropreg.recorder import largest_rise

    assert largest_rise([10.0, 5.0, 8.0, 4.0, 4.5]) == 3.0  # 5 -> 8, recovered by the end
    assert largest_rise([9.0, 6.0, 5.0]) == 0.0 and largest_rise([3.0]) is None

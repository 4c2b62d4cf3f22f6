"""Every shipped configuration trains: each regularizer of each study of each shipped preset, with
that study's model, optimizer and overrides (its regularizer's defaults, no sweep), for 200 updates on
the embedded mnist5k, ends `completed` with a training loss that falls; and the paper preset's MNIST
studies do the same on the real 60,000 digits when ../shared/data/mnist is there. One process,
packed, so it stays fast; a broken default (the paper preset's lr 1.0 diverged on most rows) fails
here long before a GPU-day is spent."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from conftest import ROOT, SHARED_DATA, resolved
from dropreg.identity import pack_key, run_identity
from dropreg.train import train_pack

PRESETS = ["paper", "quick", "demo"]


def _cases(data_dir, presets=PRESETS, dataset: str = "mnist5k", eval_every: int = 50,
           studies_on: str | None = None) -> dict[str, dict]:
    """label -> resolved config, one per distinct (study's model/optim/overrides, regularizer); with
    `studies_on`, only the studies on that dataset."""
    cases: dict[str, dict] = {}
    seen = set()
    for preset in presets:
        p = yaml.safe_load((ROOT / "presets" / f"{preset}.yaml").read_text())
        for name, study in p["studies"].items():
            if studies_on and study["dataset"] != studies_on:
                continue
            for reg in study["regularizers"]:
                config = resolved(
                    f"dataset={dataset}", f"model={study['model']}", f"optim={study['optim']}", f"regularizer={reg}",
                    "trainer=cpu", *p.get("overrides", []), *study.get("overrides", []),
                    *study.get("regularizer_overrides", {}).get(reg, []),
                    f"dataset.data_dir={data_dir}", "dataset.train_subset=null", "optim.max_updates=200",
                    f"trainer.eval_every={eval_every}", "trainer.threads=null")
                key = json.dumps(run_identity(config), sort_keys=True)
                if key not in seen:
                    seen.add(key)
                    cases[f"{preset}/{name}/{reg}"] = config
    return cases


def test_every_regularizer_of_every_study_trains_with_its_optimizer(data_dir, tmp_path):
    _train_and_check(_cases(data_dir), tmp_path, at_least=20)


@pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason="../shared/data/mnist not present")
def test_the_paper_presets_mnist_studies_train_on_the_real_digits(tmp_path):
    """The real 60,000 (prepared by the product from ../shared/data/mnist: 50,000 train, 10,000
    validation), every row of the paper preset's MNIST studies with its own model and optimizer."""
    from dropreg.data import cli

    prepared = tmp_path / "prepared"
    assert cli.main(["prepare", "mnist", f"download.local_dir={SHARED_DATA}", f"raw_dir={tmp_path / 'raw'}",
                     f"prepared_dir={prepared}"]) == 0
    cases = _cases(prepared, presets=["paper"], dataset="mnist", eval_every=100, studies_on="mnist")
    _train_and_check(cases, tmp_path / "runs", at_least=10)


def _train_and_check(cases: dict[str, dict], tmp_path, at_least: int) -> None:
    assert len(cases) >= at_least
    packs: dict[str, list[str]] = {}
    for label, config in cases.items():
        packs.setdefault(json.dumps(pack_key(config), sort_keys=True), []).append(label)
    failures = []
    for labels in packs.values():
        summaries = train_pack([cases[label] for label in labels],
                               [tmp_path / label.replace("/", "-") for label in labels])
        for label, s in zip(labels, summaries):
            loss = pd.read_csv(tmp_path / label.replace("/", "-") / "metrics.csv")["train/loss"]
            if s["status"] != "completed" or not loss.iloc[-1] < loss.iloc[0]:
                failures.append(f"{label}: {s['status']}, loss {loss.iloc[0]:.3g} -> {loss.iloc[-1]:.3g}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("preset", PRESETS)
def test_defaults_carry_the_measurement_behind_them(preset):
    """The optimizer files the shipped presets use say what measurement chose their values."""
    p = yaml.safe_load((ROOT / "presets" / f"{preset}.yaml").read_text())
    for optim in {s["optim"] for s in p["studies"].values()}:
        text = (ROOT / "conf" / "optim" / f"{optim}.yaml").read_text()
        assert "measured" in text.lower() or optim == "udacity", f"conf/optim/{optim}.yaml gives no measurement"

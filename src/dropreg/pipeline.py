"""The pipeline config (`conf/pipeline/<preset>.yaml`) turned into the runs the Snakefile trains.

A study is one block: dataset, model, optim protocol, regularizers, seeds, extra Hydra overrides and
optional sweep axes. Every (regularizer, sweep point, seed) is one run with a predictable id such as
`dropout-p0.5-seed1`, trained in `results/<preset>/runs/<study>/<run>/`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .config import conf_dir, exception_chain

DATASET_FILES = {"mnist", "fashion_mnist", "notmnist", "mnist5k"}
TABLE_FIGURES = {"table9", "notmnist_table"}  # these also write .md and .tex


class PipelineConfigError(ValueError):
    """A pipeline config that fails validation; the message names the file and the key."""


@dataclass(frozen=True)
class Run:
    id: str  # <regularizer>[-<axis><value>...]-seed<seed>
    overrides: tuple[str, ...]  # the Hydra overrides of its training run


@dataclass
class Pipeline:
    preset: str
    config: dict[str, Any]
    runs: dict[str, dict[str, Run]] = field(default_factory=dict)  # study -> run id -> Run

    @property
    def results(self) -> str:
        return f"results/{self.preset}"

    @property
    def figures_dir(self) -> str:
        return f"figures/{self.preset}"

    def study(self, name: str) -> dict[str, Any]:
        return self.config["studies"][name]

    def run_dir(self, study: str, run: str) -> str:
        return f"{self.results}/runs/{study}/{run}"

    def summaries(self, study: str) -> list[str]:
        return [f"{self.run_dir(study, r)}/summary.json" for r in self.runs[study]]

    def sweep_columns(self, study: str) -> list[str]:
        """`name=config.key` pairs for the summary table, one per sweep axis."""
        return [f"{a['name']}={a['key']}" for a in self.study(study).get("sweep", [])]

    def figure_targets(self) -> list[str]:
        out = []
        for name, study in self.config["studies"].items():
            for kind in study.get("figures", []):
                base = f"{self.figures_dir}/{name}/{kind}"
                out += [f"{base}.png", f"{base}.pdf"]
                if kind in TABLE_FIGURES:
                    out += [f"{base}.md", f"{base}.tex"]
        return out

    def describe(self, study: str) -> str:
        """One sentence for captions: what was run."""
        s = self.study(study)
        axes = [f"{a['name']} ∈ {{{', '.join(_format(v) for v in a['values'])}}}" for a in s.get("sweep", [])]
        sweep = f"; sweep {', '.join(axes)}" if axes else ""
        return (f"Preset `{self.preset}`, study `{study}`: {s['dataset']}, model `{s['model']}`, optimizer "
                f"`{s['optim']}` ({self.max_updates(study):,} weight updates), regularizers "
                f"{', '.join(s['regularizers'])}{sweep}; seeds {s['seeds']}; {len(self.runs[study])} training runs.")

    def max_updates(self, study: str) -> int:
        """The update budget of a study: its overrides, the preset's, else the optim file's."""
        for o in [*self.study(study).get("overrides", []), *self.config.get("overrides", [])]:
            if o.startswith("optim.max_updates="):
                return int(o.split("=", 1)[1])
        optim = yaml.safe_load((conf_dir() / "optim" / f"{self.study(study)['optim']}.yaml").read_text())
        return int(optim["max_updates"])


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "all"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _hydra_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def expand_runs(name: str, study: dict[str, Any], trainer: str, common: list[str]) -> dict[str, Run]:
    axes = study.get("sweep", [])
    runs: dict[str, Run] = {}
    for reg in study["regularizers"]:
        for point in itertools.product(*(a["values"] for a in axes)):
            for seed in study["seeds"]:
                parts = [reg] + [f"{a['name']}{_format(v)}" for a, v in zip(axes, point)] + [f"seed{seed}"]
                overrides = [f"dataset={study['dataset']}", f"model={study['model']}", f"optim={study['optim']}",
                             f"regularizer={reg}", f"trainer={trainer}", f"seed={seed}", *common,
                             *study.get("overrides", []), *study.get("regularizer_overrides", {}).get(reg, [])]
                overrides += [f"{a['key'].format(regularizer=reg)}={_hydra_value(v)}" for a, v in zip(axes, point)]
                run = Run("-".join(parts), tuple(overrides))
                runs[run.id] = run
    return runs


def _options(group: str) -> set[str]:
    return {p.stem for p in (conf_dir() / group).glob("*.yaml")}


def _check_names(cfg: dict[str, Any], source: str) -> None:
    options = {group: _options(group) for group in ("model", "optim", "regularizer", "trainer")}
    for study_name, study in cfg["studies"].items():
        for key in ("model", "optim"):
            if study[key] not in options[key]:
                raise PipelineConfigError(
                    f"{source}: studies.{study_name}.{key}={study[key]!r}: allowed are {sorted(options[key])}")
        for i, reg in enumerate(study["regularizers"]):
            if reg not in options["regularizer"]:
                raise PipelineConfigError(
                    f"{source}: studies.{study_name}.regularizers[{i}]={reg!r}: allowed are "
                    f"{sorted(options['regularizer'])} (conf/regularizer/)")
        for reg in study.get("regularizer_overrides", {}):
            if reg not in study["regularizers"]:
                raise PipelineConfigError(f"{source}: studies.{study_name}.regularizer_overrides.{reg}: "
                                          f"not among the study's regularizers {study['regularizers']}")
    if cfg["trainer"] not in options["trainer"]:
        raise PipelineConfigError(f"{source}: trainer={cfg['trainer']!r}: allowed are {sorted(options['trainer'])}")


def _schema_error(exc: Exception, source: str) -> PipelineConfigError:
    import jsonschema

    cause = next((a for a in exception_chain(exc) if isinstance(a, jsonschema.ValidationError)), None)
    if cause is None:
        return PipelineConfigError(f"{source}: {' '.join(str(exc).split())}")
    key = ".".join(str(p) for p in cause.absolute_path) or "(top level)"
    return PipelineConfigError(f"{source}: {key}: {cause.message}")


def load(config: dict[str, Any]) -> Pipeline:
    """From Snakemake's `config` (`--config preset=NAME` or `preset=path/to/file.yaml`)."""
    from snakemake.utils import validate

    preset = str(config.get("preset", "paper"))
    path = Path(preset) if preset.endswith((".yaml", ".yml")) else conf_dir() / "pipeline" / f"{preset}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (conf_dir() / "pipeline").glob("*.yaml") if p.stem != "schema")
        raise PipelineConfigError(f"preset={preset!r}: no file {path}; presets are {known} or a path to a .yaml")
    source = str(path)
    cfg = yaml.safe_load(path.read_text()) or {}
    try:
        validate(cfg, str(conf_dir() / "pipeline" / "schema.yaml"))
    except Exception as exc:  # snakemake wraps jsonschema's error in a WorkflowError
        raise _schema_error(exc, source) from exc
    _check_names(cfg, source)
    pipe = Pipeline(preset=cfg["preset"], config=cfg)
    for name, study in cfg["studies"].items():
        pipe.runs[name] = expand_runs(name, study, cfg["trainer"], cfg.get("overrides", []))
    return pipe

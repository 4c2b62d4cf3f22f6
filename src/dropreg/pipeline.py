"""A preset (`presets/<name>.yaml`) turned into the runs, packs and targets the Snakefile builds.

A study expands to its runs, one per (regularizer, sweep point, seed), e.g. `dropout-p0.5-seed1` in
`results/<preset>/runs/<study>/<run>/`. A study that declares `tune:` first runs the paper's
protocol: one tuning run per (regularizer, grid candidate, tuning seed) on the train/validation
split, e.g. `l2-lr0.1-l2_weight0.0001-seed1` in `results/<preset>/tuning/<study>/`; a `select` job
picks each regularizer's candidate (results/<preset>/<study>/selected.yaml) and the study's runs
train with it.

Every run is composed and validated as a training run here, when the DAG is built, so a bad preset
stops `snakemake -n` before any job with one line naming the file and the key. The runs of one
study and stage that can share a pack (see `config.pack_key`) are grouped into packs of at most
`pack_size`; each pack is one training job that reads its spec,
results/<preset>/packs/<study>/<stage><n>.json (the members' run dirs and resolved configs).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from typing import Any, Optional

from .compose import Composer
from .errors import one_line
from .identity import pack_key, run_identity
from .schema import as_container, validate
from .figure_kinds import FIGURE_KINDS
from .layout import FINAL, TUNE, Layout
from .naming import hydra_value, id_value, short_key
from .preset import PipelineConfigError, command_line_overrides, command_line_settings, read_preset
from .specs import load_selection


@dataclass(frozen=True)
class Run:
    study: str
    stage: str  # FINAL or TUNE
    id: str
    regularizer: str
    seed: int
    run_dir: str
    overrides: tuple[str, ...]  # Hydra overrides, before any selected values
    late: tuple[str, ...]  # the command line's overrides: applied last, after selected values
    config: dict[str, Any] = field(compare=False, repr=False)  # resolved, without selected values
    sweep: dict[str, Any] = field(default_factory=dict, compare=False)  # axis name -> value
    candidate: dict[str, Any] = field(default_factory=dict, compare=False)  # tuning: key -> value


@dataclass
class Pack:
    study: str
    stage: str
    number: int
    runs: list[Run]

    @property
    def name(self) -> str:
        return f"{self.stage}{self.number}"

    @property
    def rule(self) -> str:
        return f"train_{self.study}_{self.name}"


@dataclass
class Pipeline:
    preset: str
    config: dict[str, Any]
    source: str
    runs: dict[str, dict[str, Run]] = field(default_factory=dict)  # study -> run id -> final run
    tuning: dict[str, dict[str, Run]] = field(default_factory=dict)  # study -> run id -> tuning run
    packs: list[Pack] = field(default_factory=list)
    composer: Composer = field(default_factory=Composer, repr=False)

    @property
    def layout(self) -> Layout:
        return Layout(self.preset)

    @property
    def gpus_per_pack(self) -> int:
        """The `gpu` resource each training job claims (and, on SLURM, requests)."""
        return int(self.config.get("gpus_per_pack", 0))

    @property
    def threads_per_pack(self) -> int:
        return int(self.config.get("threads_per_pack", 1))

    def study(self, name: str) -> dict[str, Any]:
        return self.config["studies"][name]

    def tuned(self, study: str) -> bool:
        return "tune" in self.study(study)

    def tuned_studies(self) -> list[str]:
        """Studies with a tuning stage: their packs lie on the longest path (tune -> select -> final)."""
        return [s for s in self.config["studies"] if self.tuned(s)]

    def summaries(self, study: str, stage: str = FINAL) -> list[str]:
        runs = self.runs if stage == FINAL else self.tuning
        return [f"{r.run_dir}/summary.json" for r in runs[study].values()]

    def study_packs(self, study: str, stage: str) -> list[Pack]:
        return [p for p in self.packs if p.study == study and p.stage == stage]

    def specs(self, study: str, stage: str = FINAL) -> list[str]:
        return [self.layout.spec(study, p.name) for p in self.study_packs(study, stage)]

    def pack(self, study: str, name: str) -> Pack:
        for p in self.packs:
            if p.study == study and p.name == name:
                return p
        if study not in self.config["studies"]:
            raise PipelineConfigError(f"{self.source}: no study {study!r}; studies are {', '.join(self.config['studies'])}")
        known = ", ".join(p.name for p in self.packs if p.study == study)
        raise PipelineConfigError(f"{self.source}: study {study!r} has no pack {name!r}; its packs are {known}")

    def figure_targets(self) -> list[str]:
        out = []
        for name, study in self.config["studies"].items():
            kinds = list(study.get("figures", [])) + (["tuning"] if "tune" in study else [])
            out += [f for kind in kinds for f in FIGURE_KINDS[kind].outputs(self.layout.figure(name, kind))]
        return out

    # ------------------------------------------------------------------ what a pack trains
    def signature(self, pack: Pack) -> str:
        """Changes whenever a member's run dir, overrides or resolved config does (also through an
        edited conf/ file), so Snakemake rewrites the spec and reruns the pack."""
        payload = [(r.run_dir, r.overrides, r.late, r.config) for r in pack.runs]
        return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def spec(self, pack: Pack, selected: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        """The pack's spec; final runs of a tuned study take their regularizer's `selected` values, by
        default from the study's selected.yaml (the plan job of such a pack runs after `select`)."""
        if selected is None and pack.stage == FINAL and self.tuned(pack.study):
            selected = load_selection(self.layout.selected(pack.study))
        selected = selected or {}
        members = []
        for r in pack.runs:
            chosen = selected.get(r.regularizer, {}) if r.stage == FINAL else {}
            picked = list(chosen.get("overrides", []))
            config = r.config if not picked else self._resolve([*r.overrides, *picked, *r.late])
            members.append({"run_id": r.id, "run_dir": r.run_dir, "config": config, "regularizer": r.regularizer,
                            "seed": r.seed, "sweep": r.sweep, "candidate": r.candidate,
                            "selected": chosen.get("selected", {}), "overrides": [*r.overrides, *picked, *r.late]})
        return {"preset": self.preset, "study": pack.study, "stage": pack.stage, "pack": pack.name,
                "members": members}

    # ------------------------------------------------------------------ composition
    def _resolve(self, overrides: list[str]) -> dict[str, Any]:
        return as_container(validate(self.composer(overrides)))


def load(config: dict[str, Any], studies: Optional[list[str]] = None) -> Pipeline:
    """From Snakemake's `config`: `preset=NAME` or `preset=path/to/file.yaml`, and optional
    `overrides` applied to every run. Every run (of `studies`, default all) is composed and validated."""
    cfg, source = read_preset(str(config.get("preset", "paper")))
    late = command_line_overrides(config)
    cfg.update(command_line_settings(config))
    pipe = Pipeline(preset=cfg["preset"], config=cfg, source=source)
    for name, study in cfg["studies"].items():
        if studies is not None and name not in studies:
            continue
        pipe.runs[name] = _expand(pipe, name, study, late, FINAL)
        pipe.tuning[name] = _expand(pipe, name, study, late, TUNE) if "tune" in study else {}
        for stage, runs in ((TUNE, pipe.tuning[name]), (FINAL, pipe.runs[name])):
            pipe.packs += _packs(name, stage, list(runs.values()), cfg.get("pack_size", 8))
    return pipe


def _expand(pipe: Pipeline, name: str, study: dict[str, Any], late: list[str], stage: str) -> dict[str, Run]:
    """The study's runs of one stage, each composed and validated."""
    common = [f"dataset={study['dataset']}", f"model={study['model']}", f"optim={study['optim']}"]
    runs: dict[str, Run] = {}
    identities: dict[str, str] = {}  # resolved identity -> the run id that has it
    for reg in study["regularizers"]:
        sources = [("overrides", pipe.config.get("overrides", [])), (f"studies.{name}.overrides", study.get("overrides", [])),
                   (f"studies.{name}.regularizer_overrides.{reg}", study.get("regularizer_overrides", {}).get(reg, []))]
        base = [*common, f"regularizer={reg}", f"trainer={pipe.config.get('trainer', 'default')}",
                *(o for _, src in sources for o in src)]
        for variant, extra, seeds, sweep, candidate, where in _variants(name, study, reg, stage):
            for seed in seeds:
                parts = [reg, *variant, f"seed{seed}"]
                run_id = "-".join(parts)
                overrides = (*base, *extra, f"seed={seed}")
                if run_id in runs:
                    raise PipelineConfigError(f"{pipe.source}: studies.{name}: two runs would be named {run_id!r}; "
                                              "give sweep or grid values that differ in their run ids")
                try:
                    config = pipe._resolve([*overrides, *late])
                except Exception as exc:  # composition and validation errors: one line, located
                    raise PipelineConfigError(_locate(exc, pipe.source, name, run_id,
                                                      [*sources, *where, ("--config overrides", late)])) from exc
                identity = json.dumps(run_identity(config), sort_keys=True)
                if identity in identities:  # e.g. sweep values 1 and 1.0: two names, one run
                    raise PipelineConfigError(
                        f"{pipe.source}: studies.{name}: runs {identities[identity]!r} and {run_id!r} have the same "
                        f"resolved config, so they would train the same run twice; remove one of the values that "
                        f"name them")
                identities[identity] = run_id
                runs[run_id] = Run(name, stage, run_id, reg, seed, pipe.layout.run_dir(name, run_id, stage), overrides,
                                   tuple(late), config, sweep, candidate)
    return runs


def _variants(name: str, study: dict[str, Any], reg: str, stage: str):
    """(run id parts, overrides, seeds, sweep point, tuning candidate, where each override comes from
    in the preset) of each variant of a regularizer."""
    if stage == FINAL:
        axes = [(i, a) for i, a in enumerate(study.get("sweep", [])) if reg in a.get("regularizers", study["regularizers"])]
        for point in itertools.product(*(a["values"] for _, a in axes)):
            parts = [f"{a['name']}{id_value(v)}" for (_, a), v in zip(axes, point)]
            extra = [f"{a['key'].format(regularizer=reg)}={hydra_value(v)}" for (_, a), v in zip(axes, point)]
            where = [(f"studies.{name}.sweep[{i}]", [o]) for (i, _), o in zip(axes, extra)]
            yield parts, extra, study["seeds"], {a["name"]: v for (_, a), v in zip(axes, point)}, {}, where
        return
    tune = study["tune"]
    grid = {**tune["grid"].get("all", {}), **tune["grid"].get(reg, {})}
    group = {k: reg if k in tune["grid"].get(reg, {}) else "all" for k in grid}
    fixed = [*tune.get("overrides", []), "dataset.use_validation=true", f"optim.max_updates={tune['updates']}"]
    for values in itertools.product(*grid.values()):
        candidate = dict(zip(grid, values))
        parts = [f"{short_key(k)}{id_value(v)}" for k, v in candidate.items()]
        picked = {k: f"{k}={hydra_value(v)}" for k, v in candidate.items()}
        where = [(f"studies.{name}.tune.overrides", tune.get("overrides", [])),
                 *((f"studies.{name}.tune.grid.{group[k]}.{k}", [o]) for k, o in picked.items())]
        yield parts, [*fixed, *picked.values()], tune["seeds"], {}, candidate, where


def _locate(exc: Exception, source: str, study: str, run_id: str, sources: list[tuple[str, list[str]]]) -> str:
    """`<file>: <where in the preset>: <key>: <what is wrong>` for a run that does not compose."""
    message = one_line(exc)
    key = message.split(":", 1)[0].split("=", 1)[0].strip()
    for where, overrides in sources:
        if any(o.split("=", 1)[0].lstrip("+~") == key for o in overrides):
            return f"{source}: {where}: {message}"
    return f"{source}: studies.{study} (run {run_id}): {message}"


def _packs(study: str, stage: str, runs: list[Run], size: int) -> list[Pack]:
    """Runs grouped by what they must share, each group cut into balanced packs of at most `size`."""
    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(json.dumps(pack_key(r.config), sort_keys=True), []).append(r)
    packs: list[Pack] = []
    for members in groups.values():
        n = math.ceil(len(members) / size)
        bounds = [round(i * len(members) / n) for i in range(n + 1)]
        for a, b in zip(bounds[:-1], bounds[1:]):
            packs.append(Pack(study, stage, len(packs) + 1, members[a:b]))
    return packs



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
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from .config import (MEMBER_KEYS, Composer, as_container, conf_dir, exception_chain, one_line, pack_key, run_identity,
                     settings_of)
from .figure_kinds import FIGURE_KINDS, LISTABLE
from .naming import hydra_value, id_value, short_key

FINAL, TUNE = "final", "tune"
# what tuning may search: the keys in which runs of one pack may differ, but their seed and data
TUNABLE = tuple(k for k in MEMBER_KEYS if k not in ("seed", "dataset.train_subset", "model.name", "optim.name"))


def presets_dir() -> Path:
    return conf_dir().parent / "presets"


class PipelineConfigError(ValueError):
    """A preset that fails validation; the message names the file and the key."""


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

    # ------------------------------------------------------------------ paths
    @property
    def results(self) -> str:
        return f"results/{self.preset}"

    @property
    def figures_dir(self) -> str:
        return f"figures/{self.preset}"

    def study(self, name: str) -> dict[str, Any]:
        return self.config["studies"][name]

    def tuned(self, study: str) -> bool:
        return "tune" in self.study(study)

    def tuned_studies(self) -> list[str]:
        """Studies with a tuning stage: their packs lie on the longest path (tune -> select -> final)."""
        return [s for s in self.config["studies"] if self.tuned(s)]

    def run_dir(self, study: str, run: str, stage: str = FINAL) -> str:
        return f"{self.results}/{'runs' if stage == FINAL else 'tuning'}/{study}/{run}"

    def summaries(self, study: str, stage: str = FINAL) -> list[str]:
        runs = self.runs if stage == FINAL else self.tuning
        return [f"{r.run_dir}/summary.json" for r in runs[study].values()]

    def selected_path(self, study: str) -> str:
        return f"{self.results}/{study}/selected.yaml"

    def tuning_table(self, study: str) -> str:
        return f"{self.results}/{study}/tuning.csv"

    def spec_path(self, pack: Pack) -> str:
        return f"{self.results}/packs/{pack.study}/{pack.name}.json"

    def study_packs(self, study: str, stage: str) -> list[Pack]:
        return [p for p in self.packs if p.study == study and p.stage == stage]

    def specs(self, study: str, stage: str = FINAL) -> list[str]:
        return [self.spec_path(p) for p in self.study_packs(study, stage)]

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
            out += [f for kind in kinds for f in FIGURE_KINDS[kind].outputs(f"{self.figures_dir}/{name}/{kind}")]
        return out

    # ------------------------------------------------------------------ what a pack trains
    def signature(self, pack: Pack) -> str:
        """Changes whenever a member's run dir, overrides or resolved config does (also through an
        edited conf/ file), so Snakemake rewrites the spec and reruns the pack."""
        payload = [(r.run_dir, r.overrides, r.late, r.config) for r in pack.runs]
        return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def spec(self, pack: Pack, selected: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        """The pack's spec; final runs of a tuned study take their regularizer's selected values."""
        members = []
        for r in pack.runs:
            chosen = (selected or {}).get(r.regularizer, {}) if r.stage == FINAL else {}
            picked = list(chosen.get("overrides", []))
            config = r.config if not picked else self._resolve([*r.overrides, *picked, *r.late])
            members.append({"run_id": r.id, "run_dir": r.run_dir, "regularizer": r.regularizer, "seed": r.seed,
                            "sweep": r.sweep, "candidate": r.candidate, "selected": chosen.get("selected", {}),
                            "overrides": [*r.overrides, *picked, *r.late], "config": config})
        return {"preset": self.preset, "study": pack.study, "stage": pack.stage, "pack": pack.name,
                "members": members}

    def write_spec(self, study: str, name: str, out: str) -> dict[str, Any]:
        """Write the pack's spec (final runs of a tuned study with the values in its selected.yaml)."""
        from .atomic import write_json
        from .select import load_selection

        pack = self.pack(study, name)
        selected = load_selection(self.selected_path(study)) if pack.stage == FINAL and self.tuned(study) else None
        spec = self.spec(pack, selected)
        write_json(out, spec)
        return spec

    # ------------------------------------------------------------------ composition
    def _resolve(self, overrides: list[str]) -> dict[str, Any]:
        return as_container(settings_of(self.composer(overrides)))


# ----------------------------------------------------------------------------- loading
def _options(group: str) -> set[str]:
    return {p.stem for p in (conf_dir() / group).glob("*.yaml")}


def _check_names(cfg: dict[str, Any], source: str) -> None:
    options = {group: _options(group) for group in ("model", "optim", "regularizer", "trainer")}
    for study_name, study in cfg["studies"].items():
        where = f"{source}: studies.{study_name}"
        for key in ("model", "optim"):
            if study[key] not in options[key]:
                raise PipelineConfigError(f"{where}.{key}={study[key]!r}: allowed are {sorted(options[key])}")
        for i, reg in enumerate(study["regularizers"]):
            if reg not in options["regularizer"]:
                raise PipelineConfigError(f"{where}.regularizers[{i}]={reg!r}: allowed are "
                                          f"{sorted(options['regularizer'])} (conf/regularizer/)")
        for reg in study.get("regularizer_overrides", {}):
            if reg not in study["regularizers"]:
                raise PipelineConfigError(f"{where}.regularizer_overrides.{reg}: not among the study's regularizers "
                                          f"{study['regularizers']}")
        names = [a["name"] for a in study.get("sweep", [])]
        for i, axis in enumerate(study.get("sweep", [])):
            if names.count(axis["name"]) > 1:
                raise PipelineConfigError(f"{where}.sweep[{i}].name={axis['name']!r}: used twice")
            bad = [r for r in axis.get("regularizers", []) if r not in study["regularizers"]]
            if bad:
                raise PipelineConfigError(f"{where}.sweep[{i}].regularizers: {bad} not among the study's regularizers")
        for i, kind in enumerate(study.get("figures", [])):
            if kind not in LISTABLE:
                raise PipelineConfigError(f"{where}.figures[{i}]={kind!r}: allowed are {', '.join(LISTABLE)}"
                                          + (" (tuning is drawn for every study with a tune: stage)"
                                             if kind == "tuning" else ""))
            missing = [n for n in FIGURE_KINDS[kind].needs if n not in names]
            if missing:
                raise PipelineConfigError(f"{where}.figures: {kind} plots a sweep named {', '.join(missing)}, which "
                                          f"this study lacks (its sweeps: {names or 'none'})")
        swept = {a["key"].format(regularizer=r) for a in study.get("sweep", [])
                 for r in a.get("regularizers", study["regularizers"])}
        _check_tune(study, where, swept)
    if cfg["trainer"] not in options["trainer"]:
        raise PipelineConfigError(f"{source}: trainer={cfg['trainer']!r}: allowed are {sorted(options['trainer'])}")


def _check_tune(study: dict[str, Any], where: str, swept: set[str]) -> None:
    for group, grid in study.get("tune", {}).get("grid", {}).items():
        if group != "all" and group not in study["regularizers"]:
            raise PipelineConfigError(f"{where}.tune.grid.{group}: neither `all` nor one of the study's regularizers "
                                      f"{study['regularizers']}")
        for key in grid:
            if not any(key == k or key.startswith(k + ".") for k in TUNABLE):
                raise PipelineConfigError(f"{where}.tune.grid.{group}.{key}: not tunable; runs that share a pack "
                                          f"may differ only in {', '.join(TUNABLE)}")
            if key in swept:
                raise PipelineConfigError(f"{where}.tune.grid.{group}.{key}: also a sweep key of the study")


def _schema_error(exc: Exception, source: str) -> PipelineConfigError:
    import jsonschema

    cause = next((a for a in exception_chain(exc) if isinstance(a, jsonschema.ValidationError)), None)
    if cause is None:
        return PipelineConfigError(f"{source}: {' '.join(str(exc).split())}")
    key = ".".join(str(p) for p in cause.absolute_path) or "(top level)"
    return PipelineConfigError(f"{source}: {key}: {cause.message}")


def command_line_overrides(config: dict[str, Any]) -> list[str]:
    """`snakemake --config overrides='[a=1, b=2]'` (a YAML list) or `overrides=a=1` (one string)."""
    value = config.get("overrides", [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PipelineConfigError(f"--config overrides={value!r}: allowed is a list of Hydra overrides, "
                                  "e.g. overrides='[optim.max_updates=2000]'")
    return value


# preset keys renamed since runs train in packs: old name -> new name
RENAMED = {"gpus_per_run": "gpus_per_pack", "threads_per_run": "threads_per_pack"}


def _check_renamed(cfg: Any, source: str) -> None:
    """One line with the new name for a key a preset written before packs uses (at the top level or
    in a study); the schema's "additional properties" message would not say it."""
    if not isinstance(cfg, dict):
        return
    places = [("", cfg)] + [(f"studies.{n}.", st) for n, st in (cfg.get("studies") or {}).items() if isinstance(st, dict)]
    for where, block in places:
        for old, new in RENAMED.items():
            if old in block:
                raise PipelineConfigError(f"{source}: {where}{old}: renamed {new!r} (a training job trains a pack "
                                          f"of runs); write {where}{new}: {block[old]}")


def read_preset(preset: str) -> tuple[dict[str, Any], str]:
    """The preset's content and its source path; checks the file, its schema and its names."""
    from snakemake.utils import validate

    shipped = {p.stem for p in presets_dir().glob("*.yaml") if p.stem != "schema"}
    path = Path(preset) if preset.endswith((".yaml", ".yml")) else presets_dir() / f"{preset}.yaml"
    if not path.is_file():
        raise PipelineConfigError(f"preset={preset!r}: no file {path}; presets are {sorted(shipped)} or a path to a .yaml")
    source = str(path)
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise PipelineConfigError(f"{source}: not valid YAML ({' '.join(str(exc).split())[:120]})") from exc
    _check_renamed(cfg, source)
    try:
        validate(cfg, str(presets_dir() / "schema.yaml"))
    except Exception as exc:  # snakemake wraps jsonschema's error in a WorkflowError
        raise _schema_error(exc, source) from exc
    if cfg["preset"] in shipped and path.resolve() != (presets_dir() / f"{cfg['preset']}.yaml").resolve():
        raise PipelineConfigError(f"{source}: preset={cfg['preset']!r} is the name of the shipped "
                                  f"presets/{cfg['preset']}.yaml, whose results this would replace; use another name")
    _check_names(cfg, source)
    return cfg, source


def load(config: dict[str, Any], studies: Optional[list[str]] = None) -> Pipeline:
    """From Snakemake's `config`: `preset=NAME` or `preset=path/to/file.yaml`, and optional
    `overrides` applied to every run. Every run (of `studies`, default all) is composed and validated."""
    cfg, source = read_preset(str(config.get("preset", "paper")))
    late = command_line_overrides(config)
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
        for variant, extra, seeds, sweep, candidate in _variants(name, study, reg, stage):
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
                    raise PipelineConfigError(_locate(exc, pipe.source, name, reg, run_id,
                                                      sources + _variant_sources(name, study, reg, stage)
                                                      + [("--config overrides", late)])) from exc
                identity = json.dumps(run_identity(config), sort_keys=True)
                if identity in identities:  # e.g. sweep values 1 and 1.0: two names, one run
                    raise PipelineConfigError(
                        f"{pipe.source}: studies.{name}: runs {identities[identity]!r} and {run_id!r} have the same "
                        f"resolved config, so they would train the same run twice; remove one of the values that "
                        f"name them")
                identities[identity] = run_id
                runs[run_id] = Run(name, stage, run_id, reg, seed, pipe.run_dir(name, run_id, stage), overrides,
                                   tuple(late), config, sweep, candidate)
    return runs


def _variants(name: str, study: dict[str, Any], reg: str, stage: str):
    """(run id parts, overrides, seeds, sweep point, tuning candidate) of each variant of a regularizer."""
    if stage == FINAL:
        axes = [a for a in study.get("sweep", []) if reg in a.get("regularizers", study["regularizers"])]
        for point in itertools.product(*(a["values"] for a in axes)):
            parts = [f"{a['name']}{id_value(v)}" for a, v in zip(axes, point)]
            extra = [f"{a['key'].format(regularizer=reg)}={hydra_value(v)}" for a, v in zip(axes, point)]
            yield parts, extra, study["seeds"], {a["name"]: v for a, v in zip(axes, point)}, {}
        return
    tune = study["tune"]
    grid = {**tune["grid"].get("all", {}), **tune["grid"].get(reg, {})}
    fixed = [*tune.get("overrides", []), "dataset.use_validation=true", f"optim.max_updates={tune['updates']}"]
    for values in itertools.product(*grid.values()):
        candidate = dict(zip(grid, values))
        parts = [f"{short_key(k)}{id_value(v)}" for k, v in candidate.items()]
        yield parts, [*fixed, *(f"{k}={hydra_value(v)}" for k, v in candidate.items())], tune["seeds"], {}, candidate


def _variant_sources(name: str, study: dict[str, Any], reg: str, stage: str) -> list[tuple[str, list[str]]]:
    if stage == FINAL:
        return [(f"studies.{name}.sweep[{i}]", [f"{a['key'].format(regularizer=reg)}={hydra_value(v)}"
                                                for v in a["values"]])
                for i, a in enumerate(study.get("sweep", []))]
    tune = study["tune"]
    out = [(f"studies.{name}.tune.overrides", tune.get("overrides", []))]
    for group in ("all", reg):
        for key, values in tune["grid"].get(group, {}).items():
            out.append((f"studies.{name}.tune.grid.{group}.{key}", [f"{key}={hydra_value(v)}" for v in values]))
    return out


def _locate(exc: Exception, source: str, study: str, reg: str, run_id: str,
            sources: list[tuple[str, list[str]]]) -> str:
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


# ----------------------------------------------------------------------------- one Snakemake per preset
def preset_lock(pipe: Pipeline):
    from .locks import FileLock

    return FileLock(Path(pipe.results) / ".snakemake.lock")


def hold_preset_lock(lock, pipe: Pipeline) -> None:
    """Take the preset's lock for the rest of this Snakemake process (called from `onstart`, so a
    dry run or "nothing to be done" never takes it), or stop this invocation in one line."""
    from .locks import Busy

    try:
        lock.acquire(f"preset {pipe.preset}: {pipe.results}/ is being produced by the snakemake of",
                     "let it finish (its packs and results are safe) or stop it, then rerun")
    except Busy as exc:
        print(f"dropreg: error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None

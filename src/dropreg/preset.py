"""A preset file read and checked: its YAML, its schema (presets/schema.yaml), its names.

Everything here stops `snakemake -n` before any job, with one line naming the file and the key;
composing each run (which checks every value's range) is the pipeline's part.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .compose import conf_dir
from .errors import exception_chain
from .identity import MEMBER_KEYS
from .figure_kinds import FIGURE_KINDS, LISTABLE

# what tuning may search: the keys in which runs of one pack may differ, but their seed and data
TUNABLE = tuple(k for k in MEMBER_KEYS if k not in ("seed", "dataset.train_subset", "model.name", "optim.name"))


def presets_dir() -> Path:
    return conf_dir().parent / "presets"


class PipelineConfigError(ValueError):
    """A preset that fails validation; the message names the file and the key."""


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


# preset keys a command line may set for one invocation (`--config gpus_per_pack=0`): they decide
# where packs run, not what they train; the value: its lowest allowed
MACHINE_KEYS = {"gpus_per_pack": 0, "threads_per_pack": 1}


def command_line_settings(config: dict[str, Any]) -> dict[str, int]:
    """`snakemake --config gpus_per_pack=N threads_per_pack=M`: the preset's values for this invocation."""
    out = {}
    for key, low in MACHINE_KEYS.items():
        if key in config:
            value = config[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise PipelineConfigError(f"--config {key}={value!r}: allowed is an integer >= {low}")
            out[key] = value
    return out


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

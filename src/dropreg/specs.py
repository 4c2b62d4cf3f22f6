"""Pack specs and selections: the files that carry a plan from the DAG to the jobs.

A spec (`results/<preset>/packs/<study>/<pack>.json`, written by `python -m dropreg.plan`) names a
pack's runs, each with its run dir and resolved config; the training job reads it and trains, and
`select`/`summarize` read it to know which runs to collect. A selection
(`results/<preset>/<study>/selected.yaml`, written by `select`) holds each regularizer's tuned values;
the plan of the study's final packs reads it. Reading both lives here so no job needs the preset.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import yaml

from .runfiles import RunFileError


class SpecError(ValueError):
    pass


# what the plan writes for each member; a training job needs only the first three of them
MEMBER_FIELDS = ("run_id", "run_dir", "config", "regularizer", "seed", "sweep", "candidate", "selected", "overrides")


def write_spec(path: str | Path, spec: dict[str, Any]) -> None:
    from .atomic import write_json

    missing = [f for m in spec["members"] for f in MEMBER_FIELDS if f not in m]
    if missing:
        raise SpecError(f"{path}: a member lacks {sorted(set(missing))}")
    write_json(path, spec)


def load_spec(path: str | Path) -> dict[str, Any]:
    """A pack spec. One that does not load is set aside (`<name>.unusable-<time>`), so that the next
    `snakemake` sees the plan job's output missing and reruns it, which writes it again (its runs,
    already ended, are not retrained)."""
    from .rundir import set_aside

    try:
        spec = json.loads(Path(path).read_text())
        members = spec["members"]
        if not members or not all(set(MEMBER_FIELDS[:3]) <= set(m) for m in members):
            raise KeyError("members")
    except FileNotFoundError as exc:
        raise SpecError(f"{path}: no such pack spec; rerun the pipeline to write it") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        kept = set_aside(Path(path))
        raise SpecError(f"{path}: not a readable pack spec ({exc.__class__.__name__}); set aside as {kept.name}: "
                        "rerun the pipeline to write it again") from exc
    return spec


def ended_runs(specs: list[str]) -> Iterator[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """(spec, member, summary) of every run of the given pack specs, each summary read strictly and
    checked to be its run dir's own, for the config the spec says (RunFileError otherwise)."""
    from .rundir import check_summary_belongs
    from .runfiles import load_summary

    for spec_path in specs:
        spec = load_spec(spec_path)
        for m in spec["members"]:
            path = Path(m["run_dir"]) / "summary.json"
            summary = load_summary(path)
            check_summary_belongs(path, summary, m["config"])
            yield spec, m, summary


def load_selection(path: str | Path) -> dict[str, Any]:
    """selected.yaml's `regularizers` mapping (regularizer -> selected values and overrides)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
        return dict(data["regularizers"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise RunFileError(f"{path}: not a readable selection ({exc.__class__.__name__}); delete it and rerun "
                           "the pipeline") from exc

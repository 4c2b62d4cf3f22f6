"""Train the runs of one pack, as the pipeline's training jobs do.

    python -m dropreg.pack SPEC.json                       # the runs a spec names
    python -m dropreg.pack SPEC.json --preset P --study S --pack final1 [--overrides JSON]

A spec (`results/<preset>/packs/<study>/<pack>.json`) names the pack's runs, each with its run dir
and resolved config. Given a preset, study and pack (what the pipeline's jobs pass), the spec is
written first from the preset, with the values tuning selected for the final runs of a tuned study.
All runs train in this one process as one batched network (see `dropreg.train.train_pack`); each
writes its own run dir. Progress goes to stdout, one line per run and evaluation. Exit 0 when every
run ended (diverged runs included); 2, with one line, when the spec, the preset, a config, the data or
a run dir is unusable (found before anything is trained) or a run did not end.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Iterator


class SpecError(ValueError):
    pass


def load_spec(path: str | Path) -> dict[str, Any]:
    """A pack spec. One that does not load is set aside (`<name>.unusable-<time>`), so that the next
    `snakemake` sees the pack job's output missing and reruns it, which writes it again (its runs,
    already ended, are not retrained)."""
    from .rundir import set_aside

    try:
        spec = json.loads(Path(path).read_text())
        members = spec["members"]
        if not members or not all({"run_id", "run_dir", "config"} <= set(m) for m in members):
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
    from .rundir import check_summary_belongs, load_summary

    for spec_path in specs:
        spec = load_spec(spec_path)
        for m in spec["members"]:
            path = Path(m["run_dir"]) / "summary.json"
            summary = load_summary(path)
            check_summary_belongs(path, summary, m["config"])
            yield spec, m, summary


def main(argv: list[str] | None = None) -> int:
    from .config import one_line
    from .pipeline import PipelineConfigError
    from .rundir import RunFileError
    from .train import _one_line_errors, train_pack

    parser = argparse.ArgumentParser(prog="python -m dropreg.pack", description=__doc__.splitlines()[0])
    parser.add_argument("spec", help="results/<preset>/packs/<study>/<pack>.json")
    parser.add_argument("--preset", help="write the spec first, from this preset (name or .yaml)")
    parser.add_argument("--study")
    parser.add_argument("--pack", help="e.g. final1, tune2")
    parser.add_argument("--overrides", default="[]", help="JSON list of the command line's preset overrides")
    parser.add_argument("--threads", type=int, help="CPU threads for the pack (trainer.threads; what Snakemake grants)")
    parser.add_argument("--wait-minutes", type=float, default=0.0,
                        help="a run dir another live process trains (an orphaned pack): wait this long for it")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        if args.preset:
            from . import pipeline

            if not (args.study and args.pack):
                raise SpecError("--preset needs --study and --pack (which pack of the preset to write and train)")
            try:
                overrides = json.loads(args.overrides)
            except json.JSONDecodeError as exc:
                raise SpecError(f"--overrides {args.overrides!r}: not a JSON list ({exc})") from exc
            pipe = pipeline.load({"preset": args.preset, "overrides": overrides}, [args.study])
            pipe.write_spec(args.study, args.pack, args.spec)
        spec = load_spec(args.spec)
        members = spec["members"]
        configs = [m["config"] for m in members]
        if args.threads:  # operational: not part of a run's identity
            configs = [{**c, "trainer": {**c["trainer"], "threads": args.threads}} for c in configs]
        summaries = train_pack(configs, [m["run_dir"] for m in members], wait_s=60.0 * args.wait_minutes)
    except (SpecError, RunFileError, PipelineConfigError, *_one_line_errors()) as exc:
        print(f"dropreg.pack: error: {one_line(exc)}", file=sys.stderr)
        return 2
    counts: dict[str, int] = {}
    for s in summaries:
        counts[s["status"]] = counts.get(s["status"], 0) + 1
    print(f"dropreg.pack: {args.spec}: {len(summaries)} runs, "
          + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

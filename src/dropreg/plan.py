"""Write the spec of one pack of a preset: what the pipeline's `plan` jobs run.

    python -m dropreg.plan --preset P --study S --pack final1 [--overrides JSON] --out SPEC.json

The study is composed from the preset (with the command line's overrides, applied last) exactly as
the DAG was built; final runs of a tuned study take their regularizer's values from the study's
selected.yaml. The training job then only reads the spec (`python -m dropreg.pack SPEC`), so it
never loads the preset. Exit 2 with one line when the preset, the pack or the selection is unusable.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    from .atomic import DiskFull
    from .pipeline import load
    from .preset import PipelineConfigError
    from .runfiles import RunFileError
    from .specs import SpecError, write_spec

    parser = argparse.ArgumentParser(prog="python -m dropreg.plan", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", required=True, help="a shipped preset's name or a path to a .yaml")
    parser.add_argument("--study", required=True)
    parser.add_argument("--pack", required=True, help="e.g. final1, tune2")
    parser.add_argument("--overrides", default="[]", help="JSON list of the command line's preset overrides")
    parser.add_argument("--out", required=True, help="results/<preset>/packs/<study>/<pack>.json")
    args = parser.parse_args(argv)
    try:
        try:
            overrides = json.loads(args.overrides)
        except json.JSONDecodeError as exc:
            raise SpecError(f"--overrides {args.overrides!r}: not a JSON list ({exc})") from exc
        pipe = load({"preset": args.preset, "overrides": overrides}, [args.study])
        spec = pipe.spec(pipe.pack(args.study, args.pack))
        write_spec(args.out, spec)
    except (SpecError, PipelineConfigError, RunFileError, DiskFull) as exc:
        print(f"dropreg.plan: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    print(f"dropreg.plan: {args.out}: {len(spec['members'])} runs of {args.study} ({args.pack})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

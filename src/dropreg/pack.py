"""Train the runs of one pack, as the pipeline's training jobs do.

    python -m dropreg.pack SPEC.json [--threads N] [--wait-minutes M]

A spec (`results/<preset>/packs/<study>/<pack>.json`, written by `python -m dropreg.plan`) names
the pack's runs, each with its run dir and resolved config; this job only reads it (it never loads
the preset). All runs train in this one process as one batched network (see
`dropreg.train.train_pack`); each writes its own run dir. Progress goes to stdout, one line per run
and evaluation. Exit 0 when every run ended (diverged runs included); 2, with one line, when the
spec, a config, the data or a run dir is unusable (found before anything is trained) or a run did
not end.
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    from .errors import one_line
    from .runfiles import RunFileError
    from .specs import SpecError, load_spec
    from .train import _one_line_errors, train_pack

    parser = argparse.ArgumentParser(prog="python -m dropreg.pack", description=__doc__.splitlines()[0])
    parser.add_argument("spec", help="results/<preset>/packs/<study>/<pack>.json")
    parser.add_argument("--threads", type=int, help="CPU threads for the pack (trainer.threads; what Snakemake grants)")
    parser.add_argument("--wait-minutes", type=float, default=0.0,
                        help="a run dir another live process trains (an orphaned pack): wait this long for it")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        spec = load_spec(args.spec)
        members = spec["members"]
        configs = [m["config"] for m in members]
        if args.threads:  # operational: not part of a run's identity
            configs = [{**c, "trainer": {**c["trainer"], "threads": args.threads}} for c in configs]
        summaries = train_pack(configs, [m["run_dir"] for m in members], wait_s=60.0 * args.wait_minutes)
    except (SpecError, RunFileError, *_one_line_errors()) as exc:
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

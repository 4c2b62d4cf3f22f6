# The preset, composed once when the DAG is built, and what every rule file shares.

import json
import os
import sys

from dropreg import locks, pipeline
from dropreg.data.embedded import EMBEDDED
from dropreg.figure_kinds import FIGURE_KINDS
from dropreg.preset import command_line_overrides

PIPE = pipeline.load(config)
L = PIPE.layout  # every path: dropreg/layout.py
STUDIES = list(PIPE.config["studies"])
# the command line's preset overrides, passed on to every plan job
OVERRIDES = json.dumps(command_line_overrides(config))
PRESET_LOCK = []  # the preset's lock, once `onstart` holds it
# Jobs run `python` from the environment Snakemake itself runs in (the project's), even when that
# environment is not activated (e.g. `.venv/bin/snakemake`).
os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])


# ----------------------------------------------------------------------------- helpers of the rules
def _plan_inputs(w):
    """A final pack of a tuned study is planned with the values tuning selected."""
    if w.pack.startswith("final") and PIPE.tuned(w.study):
        return [L.selected(w.study)]
    return []


def _figure(kind, *extra):
    """A figure job's outputs: the PNG in the report, the PDF, its caption (and .md, .tex for tables)."""
    base = L.figure("{study}", kind)
    return dict(
        png=report(
            f"{base}.png",
            caption="../report/figure.rst",
            category="{study}",
            labels={"study": "{study}", "figure": "{kind}"},
        ),
        pdf=f"{base}.pdf",
        caption=f"{base}.caption.rst",
        **{ext: f"{base}.{ext}" for ext in extra},
    )


wildcard_constraints:
    study="|".join(STUDIES),
    dataset="[a-z0-9_]+",

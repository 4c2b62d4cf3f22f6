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


wildcard_constraints:
    study="|".join(STUDIES),
    dataset="[a-z0-9_]+",

"""The DAG: download -> prepare -> [tune -> select] -> train (one job per pack) -> summarize -> figures.

    snakemake --cores N                          # preset `paper` (presets/paper.yaml)
    snakemake --cores N --config preset=demo     # every study in miniature, offline, CPU
    snakemake --cores N --config preset=demo overrides='[optim.max_updates=2000]'
    snakemake figures --config preset=demo       # redraw figures from existing results
    snakemake --report report.html --config preset=demo

Rules stay thin: each one calls a `python -m dropreg.<stage>` command; the logic lives in src/dropreg/.
Every run of the preset is composed and validated when this file is read (dropreg.pipeline.load).
"""

import json
import os
import sys
from pathlib import Path

from snakemake.utils import min_version

from dropreg import pipeline
from dropreg.data.embedded import EMBEDDED
from dropreg.figure_kinds import FIGURE_KINDS

min_version("9.0")

PIPE = pipeline.load(config)
# Jobs run `python` from the environment Snakemake itself runs in (the project's), even when that
# environment is not activated (e.g. `.venv/bin/snakemake`).
os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
R = PIPE.results  # results/<preset>
FIG = PIPE.figures_dir  # figures/<preset>
LOGS = f"logs/{PIPE.preset}"
STUDIES = list(PIPE.config["studies"])
# Every pack is a rule of its own (train_<study>_<stage><n>: its outputs are its runs' summaries);
# `--set-resources train:...` (e.g. in profiles/slurm) applies to all of them.
_set = workflow.resource_settings.overwrite_resources
if "train" in _set:
    workflow.resource_settings.overwrite_resources = {
        **_set,
        **{p.rule: _set["train"] for p in PIPE.packs if p.rule not in _set},
    }


# One Snakemake at a time per preset (held until this process ends, however it ends; cluster jobs run
# with --no-hooks and never take it). Snakemake's own .snakemake/locks do not hold: `--unlock`, which
# it suggests to a refused invocation, and any invocation that ends remove every lock in the
# directory, and a second invocation would then run "Removing output files of failed job" on packs
# the first is training. A second invocation stops here, before any job, in one line.
_PRESET_LOCK = pipeline.preset_lock(PIPE)


onstart:
    pipeline.hold_preset_lock(_PRESET_LOCK, PIPE)


report: "report/workflow.rst"


envvars:
    "PATH",


wildcard_constraints:
    study="|".join(STUDIES),
    dataset="[a-z0-9_]+",


# On a cluster these run on the submit host: downloads need the internet that compute nodes often
# lack; the rest takes seconds.
localrules:
    all,
    figures,
    download,
    select,
    summarize,
    plot,
    plot_table,
    plot_tuning,


rule all:
    input:
        expand(f"{R}/{{study}}.csv", study=STUDIES),
        PIPE.figure_targets(),


rule figures:
    input:
        PIPE.figure_targets(),


rule download:
    output:
        "data/raw/{dataset}/files.json",
    log:
        "logs/download/{dataset}.log",
    shell:
        "python -m dropreg.data download {wildcards.dataset} > {log} 2>&1"


rule prepare:
    input:
        lambda w: [] if w.dataset in EMBEDDED else f"data/raw/{w.dataset}/files.json",
    output:
        npz="data/prepared/{dataset}.npz",
        manifest="data/prepared/{dataset}.manifest.json",
    log:
        "logs/prepare/{dataset}.log",
    shell:
        "python -m dropreg.data prepare {wildcards.dataset} > {log} 2>&1"


# One job per pack (train_<study>_<stage><n>): it writes the pack's spec (its runs' dirs and resolved
# configs; final runs of a tuned study with the values tuning selected), then trains them in one
# process. `signature` changes whenever a member's overrides or resolved config do (an edited preset
# or conf/ file), so exactly the affected packs rerun.
OVERRIDES = json.dumps(pipeline.command_line_overrides(config))


for _pack in PIPE.packs:

    rule:
        name:
            _pack.rule
        input:
            data=f"data/prepared/{PIPE.study(_pack.study)['dataset']}.manifest.json",
            selected=([PIPE.selected_path(_pack.study)] if _pack.stage == "final" and PIPE.tuned(_pack.study) else []),
        output:
            spec=PIPE.spec_path(_pack),
            summaries=[f"{r.run_dir}/summary.json" for r in _pack.runs],
        log:
            f"{LOGS}/train/{_pack.study}/{_pack.name}.log",
        priority: 1 if _pack.study in PIPE.tuned_studies() else 0
        threads: PIPE.config.get("threads_per_pack", 1)
        resources:
            gpu=PIPE.config.get("gpus_per_pack", 0),
            runtime=PIPE.study(_pack.study).get("runtime_min", PIPE.config.get("runtime_min", 60)),
            mem_mb=PIPE.study(_pack.study).get("mem_mb", PIPE.config.get("mem_mb", 4000)),
        params:
            signature=PIPE.signature(_pack),
            preset=PIPE.source,
            study=_pack.study,
            pack=_pack.name,
            overrides=OVERRIDES,
        shell:
            "python -m dropreg.pack {output.spec} --preset {params.preset:q} --study {params.study} "
            "--pack {params.pack} --overrides {params.overrides:q} --threads {threads} "
            "--wait-minutes {resources.runtime} > {log} 2>&1"


rule select:
    input:
        summaries=lambda w: PIPE.summaries(w.study, "tune"),
        specs=lambda w: PIPE.specs(w.study, "tune"),
    output:
        selected=PIPE.selected_path("{study}"),
        table=PIPE.tuning_table("{study}"),
    log:
        f"{LOGS}/select/{{study}}.log",
    shell:
        "python -m dropreg.select --study {wildcards.study} --selected {output.selected} "
        "--table {output.table} {input.specs} > {log} 2>&1"


rule summarize:
    input:
        summaries=lambda w: PIPE.summaries(w.study),
        specs=lambda w: PIPE.specs(w.study),
    output:
        f"{R}/{{study}}.csv",
    log:
        f"{LOGS}/summarize/{{study}}.log",
    shell:
        "python -m dropreg.summarize --out {output} {input.specs} > {log} 2>&1"


# Figures depend on the plotting code, so editing it redraws figures and retrains nothing. Each
# figure job writes its caption from the runs it drew (<figure>.caption.rst); the report shows it.
PLOT_CODE = [f"{workflow.basedir}/src/dropreg/{name}" for name in ("figures.py", "tables.py", "paper.py")]


def _figure(study_kind):
    return report(
        f"{FIG}/{study_kind}.png",
        caption="report/figure.rst",
        category="{study}",
        labels={"study": "{study}", "figure": "{kind}"},
    )


rule plot:
    input:
        results=f"{R}/{{study}}.csv",
        code=PLOT_CODE,
    output:
        png=_figure("{study}/{kind}"),
        pdf=f"{FIG}/{{study}}/{{kind}}.pdf",
        caption=f"{FIG}/{{study}}/{{kind}}.caption.rst",
    log:
        f"{LOGS}/figures/{{study}}/{{kind}}.log",
    wildcard_constraints:
        kind="|".join(k.name for k in FIGURE_KINDS.values() if k.source == "study" and not k.table),
    params:
        out=lambda w: f"{FIG}/{w.study}/{w.kind}",
        caption_file=lambda w, output: Path(output.caption),  # read by the report, not a tracked param
    shell:
        "python -m dropreg.figures {wildcards.kind} --results {input.results} --out {params.out} > {log} 2>&1"


use rule plot as plot_table with:
    output:
        png=_figure("{study}/{kind}"),
        pdf=f"{FIG}/{{study}}/{{kind}}.pdf",
        caption=f"{FIG}/{{study}}/{{kind}}.caption.rst",
        md=f"{FIG}/{{study}}/{{kind}}.md",
        tex=f"{FIG}/{{study}}/{{kind}}.tex",
    wildcard_constraints:
        kind="|".join(k.name for k in FIGURE_KINDS.values() if k.table),


use rule plot as plot_tuning with:
    input:
        results=PIPE.tuning_table("{study}"),
        code=PLOT_CODE,
    output:
        png=_figure("{study}/{kind}"),
        pdf=f"{FIG}/{{study}}/{{kind}}.pdf",
        caption=f"{FIG}/{{study}}/{{kind}}.caption.rst",
    wildcard_constraints:
        kind="tuning",

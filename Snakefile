"""The DAG: download -> prepare -> train (one Hydra run per grid cell) -> summarize -> figures.

    snakemake --cores N                          # preset `paper` (conf/pipeline/paper.yaml)
    snakemake --cores N --config preset=demo     # every study in miniature, offline, CPU
    snakemake figures --config preset=demo       # redraw figures from existing results
    snakemake --report report.html --config preset=demo

Rules stay thin: each one calls a `python -m dropreg.<stage>` command; the logic lives in src/dropreg/.
"""

import os
import shlex
import sys

from snakemake.utils import min_version

from dropreg import pipeline
from dropreg.data.embedded import EMBEDDED
from dropreg.pipeline import TABLE_FIGURES

min_version("9.0")

PIPE = pipeline.load(config)
# Jobs run `python` from the environment Snakemake itself runs in (the project's), even when that
# environment is not activated (e.g. `.venv/bin/snakemake`).
os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
R = PIPE.results  # results/<preset>
FIG = PIPE.figures_dir  # figures/<preset>
LOGS = f"logs/{PIPE.preset}"
STUDIES = list(PIPE.config["studies"])


report: "report/workflow.rst"


envvars:
    "PATH",


wildcard_constraints:
    study="|".join(STUDIES),
    dataset="[a-z0-9_]+",
    run="[A-Za-z0-9_.-]+",


# On a cluster these run on the submit host: downloads need the internet that compute nodes often
# lack, and summaries/figures take seconds.
localrules:
    all,
    figures,
    download,
    summarize,
    plot,
    plot_table,


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


rule train:
    input:
        lambda w: f"data/prepared/{PIPE.study(w.study)['dataset']}.manifest.json",
    output:
        f"{R}/runs/{{study}}/{{run}}/summary.json",
    log:
        f"{LOGS}/train/{{study}}/{{run}}.log",
    params:
        overrides=lambda w: shlex.join(PIPE.runs[w.study][w.run].overrides),
        run_dir=lambda w: PIPE.run_dir(w.study, w.run),
    threads: PIPE.config["threads_per_run"]
    resources:
        gpu=PIPE.config["gpus_per_run"],
        runtime=lambda w: PIPE.study(w.study).get("runtime_min", PIPE.config["runtime_min"]),
        mem_mb=lambda w: PIPE.study(w.study).get("mem_mb", PIPE.config["mem_mb"]),
    shell:
        "python -m dropreg.train {params.overrides} trainer.threads={threads} "
        "hydra.run.dir={params.run_dir} > {log} 2>&1"


rule summarize:
    input:
        lambda w: PIPE.summaries(w.study),
    output:
        f"{R}/{{study}}.csv",
    log:
        f"{LOGS}/summarize/{{study}}.log",
    params:
        columns=lambda w: shlex.join(f"--column={c}" for c in PIPE.sweep_columns(w.study)),
    shell:
        "python -m dropreg.summarize --study {wildcards.study} --out {output} {params.columns} {input} > {log} 2>&1"


# Figures depend on the plotting code, so editing it redraws figures and retrains nothing. Tables
# (table9, notmnist_table) are the same rule with .md and .tex outputs added.
PLOT_CODE = [f"{workflow.basedir}/src/dropreg/{name}" for name in ("figures.py", "tables.py", "paper.py")]


rule plot:
    input:
        results=f"{R}/{{study}}.csv",
        code=PLOT_CODE,
    output:
        png=report(f"{FIG}/{{study}}/{{kind}}.png", caption="report/figure.rst", category="{study}",
                   labels={"study": "{study}", "figure": "{kind}"}),
        pdf=f"{FIG}/{{study}}/{{kind}}.pdf",
    wildcard_constraints:
        kind="learning_curves|weight_histograms|dropout_rate|dataset_size|lambda_sweep",
    log:
        f"{LOGS}/figures/{{study}}/{{kind}}.log",
    params:
        out=lambda w: f"{FIG}/{w.study}/{w.kind}",
        caption=lambda w: PIPE.describe(w.study),
    shell:
        "python -m dropreg.figures {wildcards.kind} --results {input.results} --out {params.out} "
        "--caption {params.caption:q} > {log} 2>&1"


use rule plot as plot_table with:
    output:
        png=report(f"{FIG}/{{study}}/{{kind}}.png", caption="report/figure.rst", category="{study}",
                   labels={"study": "{study}", "figure": "{kind}"}),
        pdf=f"{FIG}/{{study}}/{{kind}}.pdf",
        md=f"{FIG}/{{study}}/{{kind}}.md",
        tex=f"{FIG}/{{study}}/{{kind}}.tex",
    wildcard_constraints:
        kind="|".join(sorted(TABLE_FIGURES)),

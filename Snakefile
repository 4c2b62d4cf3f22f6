"""The DAG: download -> prepare -> plan -> [tune -> select -> plan] -> train (one job per pack) -> summarize -> figures.

    snakemake --cores N                          # preset `paper` (presets/paper.yaml)
    snakemake --cores N --config preset=demo     # every study in miniature, offline, CPU
    snakemake --cores N --config preset=demo overrides='[optim.max_updates=2000]'
    snakemake figures --config preset=demo       # redraw figures from existing results
    snakemake --report report.html --config preset=demo

Rules stay thin: each one calls a `python -m dropreg.<stage>` command; the logic lives in src/dropreg/.
Every run of the preset is composed and validated when this file is read (rules/common.smk), so a bad
preset stops `snakemake -n` before any job. One file per stage of the data flow, in rules/.
"""

from snakemake.utils import min_version

min_version("9.0")


include: "rules/common.smk"


# One Snakemake at a time per preset (held until this process ends, however it ends; cluster jobs run
# with --no-hooks and never take it). Snakemake's own .snakemake/locks do not hold: `--unlock`, which
# it suggests to a refused invocation, and any invocation that ends remove every lock in the
# directory, and a second invocation would then run "Removing output files of failed job" on packs
# the first is training. A second invocation stops here, before any job, in one line.
onstart:
    PRESET_LOCK.append(locks.hold_preset_lock(L.results, PIPE.preset))


report: "report/workflow.rst"


envvars:
    "PATH",


# On a cluster only data preparation and training are submitted; the rest runs on the submit host:
# downloads need the internet that compute nodes often lack, and the others take seconds.
localrules:
    all,
    figures,
    download,
    plan,
    select,
    summarize,
    plot,
    plot_table,
    plot_tuning,


rule all:
    input:
        [L.study_table(study) for study in STUDIES],
        PIPE.figure_targets(),


rule figures:
    input:
        PIPE.figure_targets(),


include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/tune.smk"
include: "rules/results.smk"

# The study's table (one row per run) and its figures, listed in dropreg/figure_kinds.py.

from pathlib import Path


rule summarize:
    input:
        summaries=lambda w: PIPE.summaries(w.study),
        specs=lambda w: PIPE.specs(w.study),
    output:
        L.study_table("{study}"),
    log:
        f"{L.logs}/summarize/{{study}}.log",
    shell:
        "python -m dropreg.summarize --out {output} {input.specs} > {log} 2>&1"


# Figures depend on the plotting code, so editing it redraws figures and retrains nothing. Each
# figure job writes its caption from the runs it drew (<figure>.caption.rst); the report shows it.
PLOT_CODE = sorted(
    str(p)
    for p in [
        *Path(workflow.basedir, "src", "dropreg", "plots").glob("*.py"),
        *Path(workflow.basedir, "src", "dropreg").glob("*.py"),
    ]
    if p.parent.name == "plots" or p.stem in ("figures", "figure_kinds", "tables", "paper")
)


rule plot:
    input:
        results=L.study_table("{study}"),
        code=PLOT_CODE,
    output:
        **_figure("{kind}"),
    log:
        f"{L.logs}/figures/{{study}}/{{kind}}.log",
    wildcard_constraints:
        kind="|".join(k.name for k in FIGURE_KINDS.values() if k.source == "study" and not k.table),
    params:
        out=lambda w: L.figure(w.study, w.kind),
        caption_file=lambda w, output: Path(output.caption),  # read by the report, not a tracked param
    shell:
        "python -m dropreg.figures {wildcards.kind} --results {input.results} --out {params.out} > {log} 2>&1"


use rule plot as plot_table with:
    output:
        **_figure("{kind}", "md", "tex"),
    wildcard_constraints:
        kind="|".join(k.name for k in FIGURE_KINDS.values() if k.table),


use rule plot as plot_tuning with:
    input:
        results=L.tuning_table("{study}"),
        code=PLOT_CODE,
    output:
        **_figure("{kind}"),
    wildcard_constraints:
        kind="tuning",

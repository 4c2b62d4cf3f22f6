# Plan and train, one pack at a time.
#
# `plan` writes a pack's spec (its runs' dirs and resolved configs; the final runs of a tuned study
# with the values tuning selected). Its `signature` changes whenever a member's overrides or resolved
# config do (an edited preset or conf/ file), so exactly the affected specs are rewritten and their
# packs retrained. A training job (train_<study>_<stage><n>, one rule per pack, since its outputs are
# its runs' summaries) only reads its spec. Its cluster resources: `gpu`, `runtime` and `mem_mb` from
# the preset (gpus_per_pack, runtime_min, mem_mb); everything else from the profile's
# `default-resources`, which reach only training jobs (every other rule is local).


rule plan:
    input:
        _plan_inputs,
    output:
        L.spec("{study}", "{pack}"),
    log:
        f"{L.logs}/plan/{{study}}/{{pack}}.log",
    wildcard_constraints:
        pack="(tune|final)[0-9]+",
    params:
        signature=lambda w: PIPE.signature(PIPE.pack(w.study, w.pack)),
        preset=PIPE.source,
        overrides=OVERRIDES,
    shell:
        "python -m dropreg.plan --preset {params.preset:q} --study {wildcards.study} --pack {wildcards.pack} "
        "--overrides {params.overrides:q} --out {output} > {log} 2>&1"


for _pack in PIPE.packs:

    rule:
        name:
            _pack.rule
        input:
            data=f"data/prepared/{PIPE.study(_pack.study)['dataset']}.manifest.json",
            spec=L.spec(_pack.study, _pack.name),
        output:
            [f"{r.run_dir}/summary.json" for r in _pack.runs],
        log:
            f"{L.logs}/train/{_pack.study}/{_pack.name}.log",
        priority: 1 if _pack.study in PIPE.tuned_studies() else 0
        threads: PIPE.threads_per_pack
        resources:
            gpu=PIPE.gpus_per_pack,
            runtime=PIPE.study(_pack.study).get("runtime_min", PIPE.config.get("runtime_min", 60)),
            mem_mb=PIPE.study(_pack.study).get("mem_mb", PIPE.config.get("mem_mb", 4000)),
        shell:
            "python -m dropreg.pack {input.spec} --threads {threads} --wait-minutes {resources.runtime} > {log} 2>&1"

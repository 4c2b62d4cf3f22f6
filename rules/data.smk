# Download (checked against the published sizes and md5s) and prepare (split, normalize, .npz).


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

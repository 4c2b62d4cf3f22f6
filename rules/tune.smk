# Each regularizer's hyperparameters chosen on the validation split (dropreg/select.py).


rule select:
    input:
        summaries=lambda w: PIPE.summaries(w.study, "tune"),
        specs=lambda w: PIPE.specs(w.study, "tune"),
    output:
        selected=L.selected("{study}"),
        table=L.tuning_table("{study}"),
    log:
        f"{L.logs}/select/{{study}}.log",
    shell:
        "python -m dropreg.select --study {wildcards.study} --selected {output.selected} "
        "--table {output.table} {input.specs} > {log} 2>&1"

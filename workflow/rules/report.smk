rule tables:
    input:
        base=f"results/{MODEL}/base/eval.json",
        evals=run_evals(),
    output:
        csv="results/tables/main.csv",
        md="results/tables/main.md",
        tex="results/tables/main.tex",
    log:
        "logs/tables.log",
    params:
        cfg=config_json("methods", "eval"),
        prefix=table_prefix,
    threads: 1
    conda:
        ENV
    shell:
        "alr tables --config {params.cfg:q} --base-eval {input.base} --evals {input.evals}"
        " --out-prefix {params.prefix} > {log} 2>&1"


rule efficiency:
    input:
        sidecars=expand("results/{model}/importance/{est}.json", model=MODEL, est=config["baselines"]["efficiency_estimators"]),
        train=efficiency_train_records(),
    output:
        csv="results/tables/efficiency.csv",
        md="results/tables/efficiency.md",
        tex="results/tables/efficiency.tex",
    log:
        "logs/efficiency.log",
    params:
        cfg=config_json("baselines"),
        prefix=table_prefix,
    threads: 1
    conda:
        ENV
    shell:
        "alr efficiency --config {params.cfg:q} --sidecars {input.sidecars} --train-records {input.train}"
        " --out-prefix {params.prefix} > {log} 2>&1"

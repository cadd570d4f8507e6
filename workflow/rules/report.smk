rule tables:
    input:
        base=f"results/{MODEL}/base/eval.json",
        evals=run_evals(),
    output:
        csv="results/tables/main.csv",
        md="results/tables/main.md",
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

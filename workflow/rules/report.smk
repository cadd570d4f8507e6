rule tables:
    input:
        base=f"results/{MODEL}/base/eval.json",
        evals=run_evals(),
    output:
        csv=report("results/tables/main.csv", caption="../report/main.rst", category="Tables", labels={"table": "main"}),
        md="results/tables/main.md",
        tex="results/tables/main.tex",
    log:
        "logs/tables.log",
    params:
        cfg=config_json("methods", "regularize", "eval"),
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
        csv=report("results/tables/efficiency.csv", caption="../report/efficiency.rst", category="Tables",
                   labels={"table": "efficiency"}),
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


rule ablation:
    input:
        main="results/tables/main.csv",
    output:
        csv=report("results/tables/ablation.csv", caption="../report/ablation.rst", category="Tables",
                   labels={"table": "ablation"}),
        md="results/tables/ablation.md",
        tex="results/tables/ablation.tex",
    log:
        "logs/ablation.log",
    params:
        prefix=table_prefix,
    threads: 1
    conda:
        ENV
    shell:
        "alr ablation --config '{{}}' --main-table {input.main} --out-prefix {params.prefix} > {log} 2>&1"


rule figure:
    input:
        unpack(figure_input),
    output:
        png=report("results/figures/{figure}.png", caption="../report/figure.rst", category="Figures",
                   labels={"figure": "{figure}"}),
        pdf="results/figures/{figure}.pdf",
    log:
        "logs/figures/{figure}.log",
    wildcard_constraints:
        figure="[a-z_]+",
    params:
        flags=figure_flags,
        prefix=lambda wildcards, output: os.path.splitext(output.png)[0],
    threads: 1
    resources:
        mem_mb=4000,
    conda:
        ENV
    shell:
        "alr figures --config '{{}}' --figure {wildcards.figure} {params.flags} --out-prefix {params.prefix}"
        " > {log} 2>&1"

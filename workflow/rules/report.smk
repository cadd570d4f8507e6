checkpoint select:
    """Each swept method's strength, chosen on the validation split (alr/report/selection.py); the
    chosen run then runs on every seed (`run_files(..., selected=True)` reads this checkpoint)."""
    input:
        base=base_file(MODEL, "valid.json"),
        valid=selection_valid_files(),
        valid_items=selection_valid_files("valid_items.jsonl.gz"),
    output:
        json=table_file("selection", "json"),
        tables=multiext(table_file("selection", ""), "csv", "md", "tex"),
    log:
        "logs/select.log",
    conda:
        ENV
    threads: 1
    params:
        cfg=config_json("eval", "selection"),
        prefix=lambda wildcards, output: os.path.splitext(output.json)[0],
    shell:
        "alr select --config {params.cfg:q} --base-valid {input.base} --valid {input.valid}"
        " --out-prefix {params.prefix} > {log} 2>&1"


rule tables:
    input:
        base=base_file(MODEL, "eval.json"),
        base_items=base_file(MODEL, "eval_items.jsonl.gz"),
        evals=lambda wildcards: run_evals(),
        eval_items=lambda wildcards: run_items(),  # read beside each eval.json for the paired statistics
        general=lambda wildcards: general_task_files(),  # read beside the selected sweep points' eval.json
        data_manifest=f"{DATA_DIR}/manifest.json",  # the lexical and majority rows read the domains' splits
        efficiency=table_file("efficiency", "csv"),  # the speed and storage claims
        selection=selection_json(),
        protocol=PROTOCOL,  # the claims' rules: an edit re-runs the scorecard
    output:
        csv=report(table_file("main", "csv"), caption="../report/main.rst", category="Tables", labels={"table": "main"}),
        md=table_file("main", "md"),
        tex=table_file("main", "tex"),
        forgetting=multiext(table_file("forgetting", ""), "csv", "md", "tex"),
        power_csv=report(
            table_file("power", "csv"), caption="../report/power.rst", category="Tables", labels={"table": "power"}
        ),
        power=multiext(table_file("power", ""), "md", "tex"),
        general_tasks_csv=report(
            table_file("general_tasks", "csv"),
            caption="../report/general_tasks.rst",
            category="Tables",
            labels={"table": "general tasks"},
        ),
        general_tasks=multiext(table_file("general_tasks", ""), "md", "tex"),
        hypervolume=multiext(table_file("hypervolume", ""), "csv", "md", "tex"),
        matched=multiext(table_file("matched", ""), "csv", "md", "tex"),
        claims_csv=report(
            table_file("claims", "csv"), caption="../report/claims.rst", category="Tables", labels={"table": "claims"}
        ),
        claims=multiext(table_file("claims", ""), "md", "tex"),
    log:
        "logs/tables.log",
    conda:
        ENV
    threads: 1
    params:
        cfg=config_json("methods", "eval"),
        prefix=table_prefix,
        data_dir=data_dir,
        selection=lambda wildcards, input: f"--selection {input.selection}" if input.selection else "",
    shell:
        "alr tables --config {params.cfg:q} --base-eval {input.base} --evals {input.evals}"
        " --data-dir {params.data_dir} --efficiency-table {input.efficiency} {params.selection}"
        " --out-prefix {params.prefix} > {log} 2>&1"


rule efficiency:
    input:
        sidecars=efficiency_sidecars(),
        train=lambda wildcards: efficiency_train_records(),
    output:
        csv=report(
            table_file("efficiency", "csv"),
            caption="../report/efficiency.rst",
            category="Tables",
            labels={"table": "efficiency"},
        ),
        md=table_file("efficiency", "md"),
        tex=table_file("efficiency", "tex"),
    log:
        "logs/efficiency.log",
    conda:
        ENV
    threads: 1
    params:
        prefix=table_prefix,
    shell:
        "alr efficiency --sidecars {input.sidecars} --train-records {input.train}"
        " --out-prefix {params.prefix} > {log} 2>&1"


rule ablation:
    input:
        main=table_file("main", "csv"),
    output:
        csv=report(
            table_file("ablation", "csv"),
            caption="../report/ablation.rst",
            category="Tables",
            labels={"table": "ablation"},
        ),
        md=table_file("ablation", "md"),
        tex=table_file("ablation", "tex"),
    log:
        "logs/ablation.log",
    conda:
        ENV
    threads: 1
    params:
        prefix=table_prefix,
    shell:
        "alr ablation --main-table {input.main} --out-prefix {params.prefix} > {log} 2>&1"


rule figure:
    input:
        unpack(figure_input),
    output:
        png=report(
            figure_file("{figure}", "png"),
            caption="../report/figure.rst",
            category="Figures",
            labels={"figure": "{figure}"},
        ),
        pdf=figure_file("{figure}", "pdf"),
    log:
        "logs/figures/{figure}.log",
    wildcard_constraints:
        figure="[a-z_]+",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
    params:
        flags=figure_flags,
        prefix=lambda wildcards, output: os.path.splitext(output.png)[0],
    shell:
        "alr figures --figure {wildcards.figure} {params.flags} --out-prefix {params.prefix}" " > {log} 2>&1"

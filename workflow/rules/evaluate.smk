rule evaluate_base:
    input:
        model=f"{MODEL_DIR}/manifest.json",
        data_manifest=f"{DATA_DIR}/manifest.json",
        data=dataset_files(),
    output:
        record=base_file("{model}", "eval.json"),
        per_item=base_file("{model}", "eval_items.jsonl.gz"),
    log:
        "logs/evaluate/{model}/base.log",
    benchmark:
        "benchmarks/runs/evaluate/{model}/base.tsv"
    params:
        cfg=config_json("model", "data", "eval"),
        model_dir=model_dir,
        data_dir=data_dir,
        domains=" ".join(config["domains"]),
    threads: 2
    resources:
        mem_mb=6000,
    conda:
        ENV
    shell:
        "alr evaluate --config {params.cfg:q} --model-dir {params.model_dir} --data-dir {params.data_dir}"
        " --domains {params.domains} --out {output.record} --threads {threads} > {log} 2>&1"


rule evaluate:
    input:
        model=f"{MODEL_DIR}/manifest.json",
        data_manifest=f"{DATA_DIR}/manifest.json",
        data=dataset_files(),
        weights=weights_input,
    output:
        record=f"{RUN_DIR}/eval.json",
        per_item=f"{RUN_DIR}/eval_items.jsonl.gz",
    log:
        "logs/evaluate/{model}/{domain}/{method}/seed{seed}.log",
    benchmark:
        "benchmarks/runs/evaluate/{model}/{domain}/{method}/seed{seed}.tsv"
    params:
        cfg=config_json("model", "data", "eval"),
        model_dir=model_dir,
        data_dir=data_dir,
        delta_scale=delta_scale,
    threads: 2
    resources:
        mem_mb=6000,
    conda:
        ENV
    shell:
        "alr evaluate --config {params.cfg:q} --model-dir {params.model_dir} --data-dir {params.data_dir}"
        " --domains {wildcards.domain} --weights {input.weights} --delta-scale {params.delta_scale}"
        " --run {wildcards.method} --seed {wildcards.seed} --out {output.record} --threads {threads} > {log} 2>&1"


rule validate_base:
    input:
        model=f"{MODEL_DIR}/manifest.json",
        data_manifest=f"{DATA_DIR}/manifest.json",
        data=dataset_files(),
    output:
        record=base_file("{model}", "valid.json"),
        per_item=base_file("{model}", "valid_items.jsonl.gz"),
    log:
        "logs/validate/{model}/base.log",
    params:
        cfg=config_json("model", "data", "eval"),
        model_dir=model_dir,
        data_dir=data_dir,
        domains=" ".join(config["domains"]),
    threads: 2
    resources:
        mem_mb=6000,
    conda:
        ENV
    shell:
        "alr evaluate --split valid --config {params.cfg:q} --model-dir {params.model_dir} --data-dir {params.data_dir}"
        " --domains {params.domains} --out {output.record} --threads {threads} > {log} 2>&1"


rule validate:
    """A swept run (and the reference) on the validation split: what strength selection reads."""
    input:
        model=f"{MODEL_DIR}/manifest.json",
        data_manifest=f"{DATA_DIR}/manifest.json",
        data=dataset_files(),
        weights=weights_input,
    output:
        record=f"{RUN_DIR}/valid.json",
        per_item=f"{RUN_DIR}/valid_items.jsonl.gz",
    log:
        "logs/validate/{model}/{domain}/{method}/seed{seed}.log",
    params:
        cfg=config_json("model", "data", "eval"),
        model_dir=model_dir,
        data_dir=data_dir,
        delta_scale=delta_scale,
    threads: 2
    resources:
        mem_mb=6000,
    conda:
        ENV
    shell:
        "alr evaluate --split valid --config {params.cfg:q} --model-dir {params.model_dir} --data-dir {params.data_dir}"
        " --domains {wildcards.domain} --weights {input.weights} --delta-scale {params.delta_scale}"
        " --run {wildcards.method} --seed {wildcards.seed} --out {output.record} --threads {threads} > {log} 2>&1"

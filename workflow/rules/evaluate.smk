# Each rule writes every evaluation record (wildcard `record`): `eval.json` on the test split (the
# tables), `valid.json` on the validation split (strength selection, checkpoint `select`) and, for a
# selected sweep point, `eval_general.json` (`general_tasks_mode`), so a cluster profile that sizes
# `evaluate` sizes them all (tests/test_profiles.py).
rule evaluate_base:
    input:
        model=f"{MODEL_DIR}/manifest.json",
        data_manifest=f"{DATA_DIR}/manifest.json",
        data=dataset_files(),
    output:
        record=base_file("{model}", "{record}.json"),
        per_item=base_file("{model}", "{record}_items.jsonl.gz"),
    log:
        "logs/evaluate/{model}/base.{record}.log",
    benchmark:
        "logs/benchmarks/evaluate/{model}/base.{record}.tsv"
    conda:
        ENV
    threads: MODEL_JOB_THREADS
    resources:
        mem_mb=6000,
    params:
        cfg=config_json("model", "data", "eval"),
        model_dir=model_dir,
        data_dir=data_dir,
        domains=" ".join(config["domains"]),
        split=split_of,
    shell:
        "alr evaluate --split {params.split} --config {params.cfg:q} --model-dir {params.model_dir}"
        " --data-dir {params.data_dir} --domains {params.domains} --out {output.record} --threads {threads} > {log} 2>&1"


rule evaluate:
    input:
        model=f"{MODEL_DIR}/manifest.json",
        data_manifest=f"{DATA_DIR}/manifest.json",
        data=dataset_files(),
        weights=weights_input,
    output:
        record=f"{RUN_DIR}/{{record}}.json",
        per_item=f"{RUN_DIR}/{{record}}_items.jsonl.gz",
    log:
        "logs/evaluate/{model}/{domain}/{run}/seed{seed}.{record}.log",
    benchmark:
        "logs/benchmarks/evaluate/{model}/{domain}/{run}/seed{seed}.{record}.tsv"
    conda:
        ENV
    threads: MODEL_JOB_THREADS
    resources:
        mem_mb=6000,
    params:
        cfg=run_eval_config,
        model_dir=model_dir,
        data_dir=data_dir,
        delta_scale=delta_scale,
        split=split_of,
        general_tasks=general_tasks_mode,
    shell:
        "alr evaluate --split {params.split} --general-tasks {params.general_tasks} --config {params.cfg:q}"
        " --model-dir {params.model_dir} --data-dir {params.data_dir} --domains {wildcards.domain} --weights {input.weights}"
        " --delta-scale {params.delta_scale} --run-name {wildcards.run} --seed {wildcards.seed}"
        " --out {output.record} --threads {threads} > {log} 2>&1"

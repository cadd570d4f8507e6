rule importance:
    """Every importance file of alr.importance.estimators: SI phase 1 (which also keeps
    si_adapter/ beside si.safetensors; si_official likewise), si_full, the EWC Fisher, MAS, and any registered one.
    importance_per_seed: a seeded estimator's phase 1 for one phase-2 seed (importance.seed: run)."""
    input:
        model=f"{MODEL_DIR}/manifest.json",
        data_manifest=f"{DATA_DIR}/manifest.json",
        text=dataset_file(GENERAL_TEXT, "train"),
    output:
        tensors=IMPORTANCE,
        sidecar=IMPORTANCE.replace(".safetensors", ".json"),
    log:
        "logs/importance/{model}/{estimator}.log",
    benchmark:
        "logs/benchmarks/importance/{model}/{estimator}.tsv"
    conda:
        ENV
    threads: MODEL_JOB_THREADS
    resources:
        mem_mb=estimator_mem_mb,
    params:
        cfg=estimator_config,
        model_dir=model_dir,
        data_dir=data_dir,
        seed="",
    shell:
        "alr importance --estimator {wildcards.estimator} --config {params.cfg:q} --model-dir {params.model_dir}"
        " --data-dir {params.data_dir} --out {output.tensors}{params.seed} --threads {threads} > {log} 2>&1"


use rule importance as importance_per_seed with:
    output:
        tensors=IMPORTANCE_PER_SEED,
        sidecar=IMPORTANCE_PER_SEED.replace(".safetensors", ".json"),
    log:
        "logs/importance/{model}/seed{phase1_seed}/{estimator}.log",
    benchmark:
        "logs/benchmarks/importance/{model}/seed{phase1_seed}/{estimator}.tsv"
    params:
        cfg=estimator_config,
        model_dir=model_dir,
        data_dir=data_dir,
        seed=lambda wildcards: f" --seed {wildcards.phase1_seed}",

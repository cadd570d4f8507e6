rule finetune:
    input:
        model=f"{MODEL_DIR}/manifest.json",
        data_manifest=f"{DATA_DIR}/manifest.json",
        train=dataset_file("{domain}", "train"),
        importance=importance_input,
        init_adapter=phase1_adapter_input,
        hook_data=hook_data_input,
    output:
        weights=directory(f"{RUN_DIR}/model"),
        record=f"{RUN_DIR}/train.json",
    log:
        "logs/finetune/{model}/{domain}/{run}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/finetune/{model}/{domain}/{run}/seed{seed}.tsv"
    conda:
        ENV
    threads: MODEL_JOB_THREADS
    resources:
        mem_mb=8000,
    params:
        cfg=finetune_config,
        phase_flags=phase_flags,
        model_dir=model_dir,
        data_dir=data_dir,
        out=run_dir,
    shell:
        "alr finetune --config {params.cfg:q} --model-dir {params.model_dir} --data-dir {params.data_dir}"
        " --domain {wildcards.domain} --run-name {wildcards.run} --seed {wildcards.seed}"
        " --out {params.out} {params.phase_flags} --threads {threads} > {log} 2>&1"

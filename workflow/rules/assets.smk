rule prefetch:
    output:
        record="resources/hub/prefetch.json",
    log:
        "logs/prefetch.log",
    localrule: True
    conda:
        ENV
    params:
        cfg=config_json("model", "data"),
    shell:
        "HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 TRANSFORMERS_OFFLINE=0"
        " alr prefetch --config {params.cfg:q} --out {output.record} > {log} 2>&1"


rule prepare_model:
    input:
        prefetch_input(),
    output:
        manifest=f"{MODEL_DIR}/manifest.json",
    log:
        f"logs/prepare_model/{MODEL}.log",
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=4000,
    params:
        cfg=config_json("model"),
        out=manifest_dir,
    shell:
        "alr prepare-model --config {params.cfg:q} --out {params.out} > {log} 2>&1"


rule prepare_data:
    input:
        prefetch_input(),
        user_files(config["data"]),  # your own JSONL files (source: jsonl): editing one rebuilds the data
    output:
        files=dataset_files(),
        manifest=f"{DATA_DIR}/manifest.json",
    log:
        "logs/prepare_data.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
    params:
        cfg=config_json("data"),
        out=manifest_dir,
    shell:
        "alr prepare-data --config {params.cfg:q} --out {params.out} > {log} 2>&1"

rule importance:
    input:
        model=f"{MODEL_DIR}/manifest.json",
        data_manifest=f"{DATA_DIR}/manifest.json",
        text=f"{DATA_DIR}/general_text/train.jsonl",
    output:
        tensors="results/{model}/importance/si.safetensors",
        sidecar="results/{model}/importance/si.json",
        adapter=directory("results/{model}/importance/phase1_adapter"),
    log:
        "logs/importance/{model}/si.log",
    benchmark:
        "benchmarks/runs/importance/{model}/si.tsv"
    params:
        cfg=config_json("model", "lora", "train", "importance"),
        model_dir=model_dir,
        data_dir=data_dir,
    threads: 2
    resources:
        mem_mb=8000,
    conda:
        ENV
    shell:
        "alr importance --config {params.cfg:q} --model-dir {params.model_dir} --data-dir {params.data_dir}"
        " --out {output.tensors} --threads {threads} > {log} 2>&1"


rule importance_full:
    input:
        model=f"{MODEL_DIR}/manifest.json",
        data_manifest=f"{DATA_DIR}/manifest.json",
        text=f"{DATA_DIR}/general_text/train.jsonl",
    output:
        tensors="results/{model}/importance/si_full.safetensors",
        sidecar="results/{model}/importance/si_full.json",
    log:
        "logs/importance/{model}/si_full.log",
    benchmark:
        "benchmarks/runs/importance/{model}/si_full.tsv"
    params:
        cfg=config_json("model", "train", "importance", "baselines"),
        model_dir=model_dir,
        data_dir=data_dir,
    threads: 2
    resources:
        mem_mb=12000,
    conda:
        ENV
    shell:
        "alr importance --full --config {params.cfg:q} --model-dir {params.model_dir} --data-dir {params.data_dir}"
        " --out {output.tensors} --threads {threads} > {log} 2>&1"


rule fisher:
    input:
        model=f"{MODEL_DIR}/manifest.json",
        data_manifest=f"{DATA_DIR}/manifest.json",
        text=f"{DATA_DIR}/general_text/train.jsonl",
    output:
        tensors="results/{model}/importance/{fisher}.safetensors",
        sidecar="results/{model}/importance/{fisher}.json",
    log:
        "logs/importance/{model}/{fisher}.log",
    benchmark:
        "benchmarks/runs/importance/{model}/{fisher}.tsv"
    wildcard_constraints:
        fisher="fisher|fisher_adapted",
    params:
        cfg=config_json("model", "lora", "fisher"),
        model_dir=model_dir,
        data_dir=data_dir,
        scope=fisher_scope,
    threads: 2
    resources:
        mem_mb=8000,
    conda:
        ENV
    shell:
        "alr fisher --config {params.cfg:q} --model-dir {params.model_dir} --data-dir {params.data_dir}"
        " --scope {params.scope} --out {output.tensors} --threads {threads} > {log} 2>&1"


rule mas:
    input:
        model=f"{MODEL_DIR}/manifest.json",
        data_manifest=f"{DATA_DIR}/manifest.json",
        text=f"{DATA_DIR}/general_text/train.jsonl",
    output:
        tensors="results/{model}/importance/mas.safetensors",
        sidecar="results/{model}/importance/mas.json",
    log:
        "logs/importance/{model}/mas.log",
    benchmark:
        "benchmarks/runs/importance/{model}/mas.tsv"
    params:
        cfg=config_json("model", "lora", "mas"),
        model_dir=model_dir,
        data_dir=data_dir,
    threads: 2
    resources:
        mem_mb=8000,
    conda:
        ENV
    shell:
        "alr mas --config {params.cfg:q} --model-dir {params.model_dir} --data-dir {params.data_dir}"
        " --out {output.tensors} --threads {threads} > {log} 2>&1"

# Helpers, validation and targets; rules stay declarative.
import json
import os
import sys

from alr.config import ConfigError, section, validate_config
from alr.hub import hub_assets
from alr.methods import get_method
from alr.runs import RUN_PATTERN, all_runs, domain_runs, is_swept, parse_run, run_config, run_names

try:
    validate_config(config)
except ConfigError as exc:
    hint = ("\n(--configfile is merged over config/config.yaml key by key; a complete config such as "
            "config/paper.yaml needs --replace-workflow-config)")
    raise WorkflowError(str(exc) + hint) from None


# Every rule's shell command calls the `alr` CLI. It is installed beside Snakemake (`pip install -e .`
# puts both into one bin/), so that folder goes first on the jobs' PATH: `make run` calls
# .venv/bin/snakemake from a shell where the venv is not activated, and a plain `snakemake` of any
# environment finds its own `alr`. Not `sys.executable -m alr` in the rules: with `--sdm conda` a job
# must run the conda env's `alr`, and Snakemake's activation puts that env's bin/ before this one.
# A SLURM job re-runs Snakemake (the same interpreter, on a shared file system) on its node, so
# this line runs there too. `os.path.dirname` without resolving links: a venv's python is a link.
envvars:
    "PATH",


os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])


if "hub" in config:  # hub assets come from this cache, filled by `prefetch`; every other job runs offline
    os.environ.update(HF_HOME=os.path.abspath(config["hub"]["cache"]))
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(var, "1")

MODEL = config["model"]["name"]
MODEL_DIR = f"resources/models/{MODEL}"
DATA_DIR = "resources/data"
RUN_DIR = "results/{model}/{domain}/{method}/seed{seed}"
RUNS = all_runs(config)  # the tuned methods; one run per value of regularize.lambda when it lists several
ENV = "../../envs/alr.yaml"


wildcard_constraints:
    model=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    domain="|".join(config["data"]["domains"]),
    method=RUN_PATTERN,
    seed=r"\d+",


def config_json(*keys):
    """The config sections a rule's command needs, as inline JSON (also its rerun trigger)."""
    return json.dumps(section(config, *keys), sort_keys=True)


def dataset_files():
    specs = {**config["data"]["general"]["tasks"], **config["data"]["domains"]}
    names = [n for n, s in specs.items() if s["source"] != "lm_eval"]  # built-in lm-eval tasks bring their data
    files = [f"{DATA_DIR}/{name}/{split}.jsonl" for name in names for split in ("train", "test")]
    return files + [f"{DATA_DIR}/general_text/{split}.jsonl" for split in ("train", "test")]


def prefetch_input():
    """The prefetch record, when the config needs anything from the Hugging Face hub."""
    return ["resources/hub/prefetch.json"] if any(hub_assets(config).values()) else []


# Directories handed to `alr` are derived from the rule's own files (no hard-coded prefixes).
def model_dir(wildcards, input):
    return os.path.dirname(input.model)


def data_dir(wildcards, input):
    return os.path.dirname(input.data_manifest)


def manifest_dir(wildcards, output):
    return os.path.dirname(output.manifest)


def run_dir(wildcards, output):
    return os.path.dirname(output.record)


def table_prefix(wildcards, output):
    return os.path.splitext(output.csv)[0]


def method_of(wildcards):
    """The registry entry of a run (`alr-lambda0.5` is method `alr`)."""
    return get_method(parse_run(wildcards.method)[0])


def finetune_config(wildcards):
    """The config sections one run's `alr finetune` reads (`Method.config_sections`), with the run's
    own regularize.lambda; they are also its rerun trigger."""
    spec = method_of(wildcards)
    return json.dumps(section(run_config(config, wildcards.method), *spec.config_sections), sort_keys=True)


def importance_input(wildcards):
    """Regularised methods depend on the model's (single) SI or Fisher file, shared by all domains."""
    kind = method_of(wildcards).importance_file
    return [f"results/{wildcards.model}/importance/{kind}.safetensors"] if kind else []


def phase1_adapter_input(wildcards):
    """With `phase2_init: phase1` every LoRA method continues from phase 1's adapter."""
    if config["regularize"]["phase2_init"] == "phase1" and method_of(wildcards).adapter == "lora":
        return f"results/{wildcards.model}/importance/phase1_adapter"
    return []


def phase_flags(wildcards, input):
    flags = [f"--importance {input.importance}"] if input.importance else []
    return " ".join(flags + ([f"--init-adapter {input.init_adapter}"] if input.init_adapter else []))


def fisher_scope(wildcards):
    return "adapted" if wildcards.fisher == "fisher_adapted" else "full"


def weights_input(wildcards):
    """The weights a run evaluates: its own, or those of `weights_from` (WiSE-FT rescales lora's)."""
    source = method_of(wildcards).weights_from or wildcards.method
    run = RUN_DIR.format(model=wildcards.model, domain=wildcards.domain, method=source, seed=wildcards.seed)
    return os.path.join(run, "model")


def delta_scale(wildcards):
    return config["baselines"]["wise_ft_beta"] if wildcards.method == "wise_ft" else 1.0


def run_files(name, runs=None):
    """`name` in every run directory of the config (domain x run x seed, honouring method_domains)."""
    return [os.path.join(RUN_DIR.format(model=MODEL, domain=d, method=r, seed=s), name)
            for d, r in domain_runs(config, runs) for s in config["seeds"]]


def efficiency_train_records():
    return run_files("train.json", [r for r in RUNS if get_method(parse_run(r)[0]).trains])


def run_evals():
    return run_files("eval.json")


def table_names():
    ablation = {"alr", "alr_no_layer", "alr_no_element"} & set(config["methods"])
    return ["main", "efficiency"] + (["ablation"] if ablation else [])


def final_outputs():
    tables = [f"results/tables/{t}.{ext}" for t in table_names() for ext in ("csv", "md", "tex")]
    return tables + [f"results/figures/{f}.{ext}" for f in figure_names() for ext in ("png", "pdf")]


def coefficient_runs():
    """train.json of the LoRA runs whose layer coefficients come from `regularize.layer_coef`."""
    methods = [m for m in config["methods"] if get_method(m).regularised and get_method(m).adapter == "lora"
               and get_method(m).layer_coef == "config"]
    return run_files("train.json", [r for m in methods for r in run_names(m, config)])


def figure_names():
    """The figures this config can draw (alr.report.figures)."""
    names = ["tradeoff", "forgetting_heatmap", "efficiency"]
    if coefficient_runs():
        names.append("layer_coefficients")
    if "si" in config["baselines"]["efficiency_estimators"] or any(get_method(m).importance == "si" for m in config["methods"]):
        names.append("importance")
    if any(is_swept(m, config) for m in config["methods"] if m != "base"):
        names.append("lambda_sweep")
    return names


def figure_input(wildcards):
    """The result files one figure reads, keyed like the `alr figures` flags."""
    name = wildcards.figure
    if name in ("tradeoff", "lambda_sweep"):
        return {"main_table": "results/tables/main.csv"}
    if name == "efficiency":
        return {"efficiency_table": "results/tables/efficiency.csv"}
    if name == "forgetting_heatmap":
        return {"base_eval": f"results/{MODEL}/base/eval.json", "evals": run_evals()}
    if name == "layer_coefficients":
        return {"train_records": coefficient_runs()}
    if name == "importance":
        return {"importance": f"results/{MODEL}/importance/si.safetensors"}
    raise WorkflowError(f"unknown figure {name!r}")


def figure_flags(wildcards, input):
    flags = []
    for key, value in input.items():
        files = [value] if isinstance(value, str) else list(value)
        flags.append(f"--{key.replace('_', '-')} " + " ".join(files))
    return " ".join(flags)

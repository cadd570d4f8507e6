# Helpers, validation and targets; rules stay declarative.
import json
import os

from alr.config import ConfigError, section, validate_config
from alr.methods import get_method

try:
    validate_config(config)
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None


MODEL = config["model"]["name"]
MODEL_DIR = f"resources/models/{MODEL}"
DATA_DIR = "resources/data"
RUN_DIR = "results/{model}/{domain}/{method}/seed{seed}"
TRAINED = [m for m in config["methods"] if m != "base"]
ENV = "../../envs/alr.yaml"


wildcard_constraints:
    model=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    domain="|".join(config["data"]["domains"]),
    method=r"[a-z0-9_]+",
    seed=r"\d+",


def config_json(*keys):
    """The config sections a rule's command needs, as inline JSON (also its rerun trigger)."""
    return json.dumps(section(config, *keys), sort_keys=True)


def dataset_files():
    specs = {**config["data"]["general"]["tasks"], **config["data"]["domains"]}
    names = [n for n, s in specs.items() if s["source"] != "lm_eval"]  # built-in lm-eval tasks bring their data
    files = [f"{DATA_DIR}/{name}/{split}.jsonl" for name in names for split in ("train", "test")]
    return files + [f"{DATA_DIR}/general_text/{split}.jsonl" for split in ("train", "test")]


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


def importance_input(wildcards):
    """Regularised methods depend on the model's (single) SI or Fisher file, shared by all domains."""
    kind = get_method(wildcards.method).importance
    if kind in ("si", "si_full", "fisher", "mas"):
        return f"results/{wildcards.model}/importance/{kind}.safetensors"
    return []


def phase1_adapter_input(wildcards):
    """With `phase2_init: phase1` every LoRA method continues from phase 1's adapter."""
    if config["regularize"]["phase2_init"] == "phase1" and get_method(wildcards.method).adapter == "lora":
        return f"results/{wildcards.model}/importance/phase1_adapter"
    return []


def phase_flags(wildcards, input):
    flags = [f"--importance {input.importance}"] if input.importance else []
    return " ".join(flags + ([f"--init-adapter {input.init_adapter}"] if input.init_adapter else []))


def fisher_scope(wildcards):
    return "adapted" if wildcards.fisher == "fisher_adapted" else "full"


def weights_input(wildcards):
    """The weights a run evaluates: its own, or those of `weights_from` (WiSE-FT rescales lora's)."""
    source = get_method(wildcards.method).weights_from or wildcards.method
    run = RUN_DIR.format(model=wildcards.model, domain=wildcards.domain, method=source, seed=wildcards.seed)
    return os.path.join(run, "model")


def delta_scale(wildcards):
    return config["baselines"]["wise_ft_beta"] if wildcards.method == "wise_ft" else 1.0


def efficiency_train_records():
    return expand(f"{RUN_DIR}/train.json", model=MODEL, domain=config["domains"], seed=config["seeds"],
                  method=[m for m in TRAINED if get_method(m).trains])


def run_evals():
    return expand(
        f"{RUN_DIR}/eval.json",
        model=MODEL,
        domain=config["domains"],
        method=TRAINED,
        seed=config["seeds"],
    )


def final_outputs():
    tables = ["main", "efficiency"]
    return [f"results/tables/{t}.{ext}" for t in tables for ext in ("csv", "md", "tex")]

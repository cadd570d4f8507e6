# Helpers, validation and targets; rules stay declarative.
import json
import os
import sys

from alr.assets.catalogue import data_in_use, dataset_splits, datasets, user_files
from alr.config import validate_config
from alr.core.errors import ConfigError
from alr.core.sections import REPORT_TO_ENV, section
from alr.assets.sources.hub import hub_assets
from alr.core.io import read_json
from alr.report.protocol import protocol_path
from alr.importance.estimators import ESTIMATORS, SI, get_estimator
from alr.core.layout import (
    DATA_DIR,
    GENERAL_TEXT,
    base_file,
    dataset_file,
    figure_file,
    importance_file,
    model_dir as model_path,
    phase1_adapter,
    run_dir as run_path,
    table_file,
)
from alr.methods.registry import get_method
from alr.plugins import load_plugins
from alr.methods.runs import (
    RUN_PATTERN,
    all_runs,
    domain_runs,
    is_swept,
    resolve_run,
    run_names,
)

load_plugins()  # the ALR_PLUGINS modules' methods and estimators, before the config names them
try:
    validate_config(config)
except ConfigError as exc:
    hint = (
        "\n(--configfile is merged over config/config.yaml key by key; a complete config such as "
        "config/paper.yaml says `complete: true`)"
    )
    raise WorkflowError(str(exc) + hint) from None
config["data"] = data_in_use(config)  # only the datasets this run uses are built (and downloaded)


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
MODEL_DIR = model_path(MODEL)
RUN_DIR = run_path("{model}", "{domain}", "{run}", "{seed}")
IMPORTANCE = importance_file("{model}", "{estimator}")
IMPORTANCE_PER_SEED = importance_file("{model}", "{estimator}", "{phase1_seed}")
RUNS = all_runs(config)  # the tuned methods; one run per value of a method's strength when it lists several
RUN_OF = {run: resolve_run(config, run) for run in RUNS}  # each run's name parsed and checked once
ENV = "../../envs/alr.yaml"
PROTOCOL = str(protocol_path(config["eval"]))  # config/protocol.yaml unless eval.compare.protocol names another
# CPU threads of each model job (importance, finetune, evaluate). One: on CPU, two one-thread jobs side by
# side do more work than one two-thread job (benchmarks/README.md, "Threads per job"), and the DAG has
# independent jobs at every stage. GPU and cluster profiles raise it per rule with `set-threads`.
MODEL_JOB_THREADS = 1
# envs/alr.post-deploy.sh installs the repository into that env; Snakemake runs it from a copy under
# .snakemake/conda/, in this process's environment, so it finds the repository here.
os.environ[REPORT_TO_ENV] = config["train"].get("report_to", "none")  # no rule passes it (sections.NOT_PASSED)
os.environ.update(ALR_REPO=workflow.basedir)  # set here, not read: no `envvars:` entry


wildcard_constraints:
    model=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    domain="|".join(config["data"]["domains"]),
    run=RUN_PATTERN,
    seed=r"\d+",
    phase1_seed=r"\d+",
    estimator="|".join(ESTIMATORS),
    record="eval|valid|eval_general",  # an evaluation record: eval.json (test split), valid.json, eval_general.json


def config_json(*keys):
    """The config sections a rule's command needs, as inline JSON (also its rerun trigger). A function,
    so Snakemake does not read the Jinja templates of registry datasets (`{{question}}`) as wildcards."""
    text = json.dumps(section(config, *keys), sort_keys=True)
    return lambda wildcards: text


def dataset_files():
    """What prepare_data writes (built-in lm-eval tasks bring their own data)."""
    names = list(datasets(config["data"], built=True)) + [GENERAL_TEXT]
    return [dataset_file(name, split) for name in names for split in dataset_splits(config["data"], name)]


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


def run_of(name):
    """The resolved run `name` (alr.methods.runs.Run); a target naming no run of this config is refused."""
    if name not in RUN_OF:
        raise WorkflowError(
            f"{name!r} is not a run of this config (its runs: {', '.join(RUNS)}); "
            "name a run folder of `snakemake -n` or add the method or strength to the config"
        )
    return RUN_OF[name]


def method_of(wildcards):
    """The registry entry of a run (`alr-lambda0.5` is method `alr`)."""
    return run_of(wildcards.run).method


def finetune_config(wildcards):
    """The config sections one run's `alr finetune` reads (`Method.config_keys`), its strength set to
    the run's own value; they are also its rerun trigger, so editing another method's settings, or
    adding a point to a sweep, reruns nothing here."""
    spec = method_of(wildcards)
    return json.dumps(section(run_of(wildcards.run).config, *spec.config_keys), sort_keys=True)


def run_eval_config(wildcards):
    """What `alr evaluate` reads for a run: model, data and eval, and the run's own strength (recorded)."""
    own = section(config, "model", "data", "eval") | run_of(wildcards.run).strength_section()
    return json.dumps(own, sort_keys=True)


def estimator_config(wildcards):
    """The config sections an estimator's recorder reads (alr.importance.estimators)."""
    return json.dumps(get_estimator(wildcards.estimator).config(config), sort_keys=True)


def estimator_mem_mb(wildcards):
    return get_estimator(wildcards.estimator).mem_mb


def importance_of(model, estimator, seed):
    """The importance file a run of phase-2 `seed` reads: one per model and estimator, shared by all
    domains and seeds; with importance.seed: run, its own seed's (a seeded estimator's)."""
    return importance_file(model, estimator, seed if get_estimator(estimator).seed_per_run(config) else None)


def importance_input(wildcards):
    """A regularised method's importance file."""
    est = method_of(wildcards).estimator
    return [importance_of(wildcards.model, est.name, wildcards.seed)] if est else []


def phase1_adapter_input(wildcards):
    """With `phase2_init: phase1` a LoRA method continues a phase-1 adapter, which the SI phase writes
    beside its importance file before the file itself (docs/files.md): its own estimator's (si_official
    for alr_official), else si's."""
    spec = method_of(wildcards)
    if not spec.continues_phase1(config):
        return []
    return [importance_of(wildcards.model, spec.phase1_estimator, wildcards.seed)]


def hook_data_input(wildcards):
    """The train splits a method's loss hook reads (`Method.hook_data`; kl_lora: general_text)."""
    return [dataset_file(name, "train") for name in method_of(wildcards).hook_data]


def phase_flags(wildcards, input):
    flags = [f"--importance {input.importance}"] if input.importance else []
    init = str(input.init_adapter)  # a one-file list (a Namedlist) or a str
    return " ".join(flags + ([f"--init-adapter {phase1_adapter(init)}"] if init else []))


def weights_input(wildcards):
    """The weights a run evaluates: its own, or those of `weights_from` (WiSE-FT rescales lora's)."""
    source = method_of(wildcards).weights_from or wildcards.run
    return os.path.join(run_path(wildcards.model, wildcards.domain, source, wildcards.seed), "model")


def split_of(wildcards):
    """The `alr evaluate --split` of a record: eval.json and eval_general.json are the test split."""
    return {"eval": "test", "valid": "valid", "eval_general": "test"}[wildcards.record]


def general_tasks_mode(wildcards):
    """`alr evaluate --general-tasks` of a run's record. A sweep point's test pass on a sweep seed skips
    the general multiple-choice tasks: only the selected strength's enter a table, and they hold about
    half of a test pass's time (benchmarks/README.md). The selected point scores them apart, into
    eval_general.json (`general_task_files`). On the other seeds, where only the selected strength runs,
    the test pass scores everything, unless `eval.general_tasks_seeds: first` leaves the general tasks to
    the first seed alone (a secondary measure; config/cpu-decide.yaml, for time)."""
    if wildcards.record == "eval_general":
        return "only"
    first_only = config["eval"].get("general_tasks_seeds", "all") == "first"
    later_seed = first_only and int(wildcards.seed) != config["seeds"][0]
    sweep_point = swept(wildcards.run) and int(wildcards.seed) in sweep_seeds()
    return "skip" if wildcards.record == "eval" and (sweep_point or later_seed) else "score"


def delta_scale(wildcards):
    """The run's own scale (`wise_ft-beta0.25` evaluates lora's delta at beta 0.25)."""
    return method_of(wildcards).delta_scale(run_of(wildcards.run).config)


def swept(run):
    return is_swept(run_of(run).method.name, config)


def sweep_seeds():
    """The seeds every strength of a sweep runs on (`selection.sweep_seeds`)."""
    return config["seeds"] if config["selection"]["sweep_seeds"] == "all" else config["seeds"][:1]


def selected_runs():
    """(domain, run) of each swept method's selected strength: reads the `select` checkpoint, so only
    input functions may call it (Snakemake re-plans once selection.json exists)."""
    chosen = read_json(checkpoints.select.get().output.json)["selected"]
    return [(d, run) for d, methods in chosen.items() for run in methods.values()]


def run_files(name, runs=None, selected=True):
    """`name` in every run directory of the config (domain x run x seed, honouring method_domains): a
    swept run on `sweep_seeds()`, then (`selected`, input functions only) the selected strength on
    the other seeds too."""
    pairs = domain_runs(config, runs)
    out = [
        os.path.join(run_path(MODEL, d, r, s), name)
        for d, r in pairs
        for s in (sweep_seeds() if swept(r) else config["seeds"])
    ]
    rest = [s for s in config["seeds"] if s not in sweep_seeds()]
    if selected and rest and any(swept(r) for _, r in pairs):
        out += [
            os.path.join(run_path(MODEL, d, r, s), name) for d, r in selected_runs() if (d, r) in pairs for s in rest
        ]
    return out


def general_task_files():
    """eval_general.json (and its items) of each selected strength on the sweep seeds, whose eval.json
    skipped the general tasks (`general_tasks_mode`); input functions only: reads the select checkpoint."""
    if not any(swept(r) for r in RUNS):
        return []
    return [
        os.path.join(run_path(MODEL, d, r, s), name)
        for d, r in selected_runs()
        for s in sweep_seeds()
        for name in ("eval_general.json", "eval_general_items.jsonl.gz")
    ]


def selection_valid_files(name="valid.json"):
    """What strength selection reads: the swept runs and the reference, on the sweep seeds, validated."""
    reference = config["eval"]["compare"]["reference"]
    pairs = [(d, r) for d, r in domain_runs(config) if swept(r)]
    pairs += [(d, reference) for d in sorted({d for d, _ in pairs})]
    return [os.path.join(run_path(MODEL, d, r, s), name) for d, r in pairs for s in sweep_seeds()]


def selection_json():
    """selection.json when a method is swept (the claims read the selected strength)."""
    return [table_file("selection", "json")] if any(swept(r) for r in RUNS) else []


def efficiency_train_records():
    return run_files("train.json", [r for r in RUNS if run_of(r).method.trains])


def run_evals():
    return run_files("eval.json")


def run_items():
    return run_files("eval_items.jsonl.gz")


def table_names():
    """The ablation table joins when a configured method has a penalty part to ablate."""
    ablation = any(any(get_method(m).ablation or ()) for m in config["methods"])
    return ["main", "efficiency"] + (["ablation"] if ablation else [])


def final_outputs():
    tables = [table_file(t, ext) for t in table_names() for ext in ("csv", "md", "tex")]
    return tables + [figure_file(f, ext) for f in figure_names() for ext in ("png", "pdf")]


def efficiency_sidecars():
    """The sidecar of each efficiency estimator; one per seed where each seed records its own (repeats)."""
    return list(
        dict.fromkeys(
            os.path.splitext(importance_of(MODEL, e, seed))[0] + ".json"
            for e in config["baselines"]["efficiency_estimators"]
            for seed in config["seeds"]
        )
    )


def coefficient_runs():
    """train.json of the LoRA runs whose layer coefficients come from `regularize.layer_coef`."""
    methods = [
        m
        for m in config["methods"]
        if get_method(m).regularised and get_method(m).uses_lora and get_method(m).layer_coef == "config"
    ]
    return run_files("train.json", [r for m in methods for r in run_names(m, config)], selected=False)


def figure_names():
    """The figures this config can draw (alr.report.figures)."""
    names = ["tradeoff", "forgetting_heatmap", "efficiency"]
    if coefficient_runs():
        names.append("layer_coefficients")
    if SI in config["baselines"]["efficiency_estimators"] or any(
        get_method(m).importance == SI for m in config["methods"]
    ):
        names.append("importance")
    if any(is_swept(m, config) for m in config["methods"]):
        names.append("lambda_sweep")
    return names


def figure_input(wildcards):
    """The result files one figure reads, keyed like the `alr figures` flags."""
    name = wildcards.figure
    if name in ("tradeoff", "lambda_sweep"):
        return {"main_table": table_file("main", "csv")}
    if name == "efficiency":
        return {"efficiency_table": table_file("efficiency", "csv")}
    if name == "forgetting_heatmap":
        # an input function: may read select; the selected sweep points' general tasks are read beside their eval.json
        return {"base_eval": base_file(MODEL, "eval.json"), "evals": run_evals(), "_general": general_task_files()}
    if name == "layer_coefficients":
        return {"train_records": coefficient_runs()}
    if name == "importance":
        si = importance_of(MODEL, SI, config["seeds"][0])
        return {"importance": si, "_sidecar": os.path.splitext(si)[0] + ".json"}
    raise WorkflowError(f"unknown figure {name!r}")


def figure_flags(wildcards, input):
    """The `alr figures` flags of a figure's inputs (keys starting with '_' are read, not passed)."""
    flags = []
    for key, value in input.items():
        if key.startswith("_"):
            continue
        files = [value] if isinstance(value, str) else list(value)
        flags.append(f"--{key.replace('_', '-')} " + " ".join(files))
    return " ".join(flags)

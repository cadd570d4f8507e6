"""Phase 2: domain fine-tuning of one method (`alr.methods.registry`) on one domain with one seed, optionally
regularised, resumable, written atomically.

    alr finetune --config config/config.yaml --model-dir resources/models/<m> --data-dir resources/data \
        --domain physics --run-name alr --seed 0 --importance results/<m>/importance/si.safetensors \
        --out results/<m>/physics/alr/seed0
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import torch

from ..assets.model import check_lora_targets, check_model_dir
from ..core.dist import is_main_process
from ..core.errors import ConfigError, did_you_mean
from ..core.examples import mc_to_pair, read_records, tokenize_pairs, tokenize_texts
from ..core.io import atomic_dir, check_replaceable, check_safetensors, read_json, sha256_file, write_json
from ..core.layout import GENERAL_TEXT, OPTIMIZER_STATE, importance_file, training_tracking
from ..core.measure import provenance
from ..core.sections import section
from ..importance.store import check_importance_file, load_importance, model_fingerprint
from ..methods.hooks import HookContext
from ..methods.penalty import ELEMENT_TRANSFORMS, NORMALIZATIONS, Regularizer, group_by_layer
from ..methods.registry import Method
from ..methods.runs import Run
from ..model.checkpoints import checkpoint_dir, remove, resume_point
from ..model.load import load_base, lora_modules, name_hub_base, wrap_lora
from ..model.trainer import run_trainer, training_arguments

log = logging.getLogger(__name__)
KIND = "finetune"  # what model/'s ownership record names (alr.core.io.atomic_dir)


def _build_regularizer(spec: Method, cfg: dict, model, model_dir, importance_path, seed: int, refs=None) -> Regularizer:
    reg_cfg = cfg["regularize"]
    if spec.uses_lora:
        modules = lora_modules(model)
        shapes = {n: tuple(m.get_base_layer().weight.shape) for n, m in modules.items()}
    else:  # full fine-tuning: every trainable parameter, theta* = its starting value
        modules = {n: p for n, p in model.named_parameters() if p.requires_grad}
        shapes = {n: tuple(p.shape) for n, p in modules.items()}
        refs = {n: p.detach().float().clone() for n, p in modules.items()}
    dev = next(model.parameters()).device
    if spec.estimator:
        # a parameter-named (full-model) file under LoRA: read the adapted modules' weights out of it
        suffix = ".weight" if not spec.estimator.lora_shaped and spec.uses_lora else ""
        importance, _ = load_importance(importance_path, shapes, model_fingerprint(model_dir), dev, suffix)
    elif spec.importance == "uniform":
        importance = {n: torch.ones(s, device=dev) for n, s in shapes.items()}
    else:
        raise ValueError(f"method {spec.name!r} has unknown importance {spec.importance!r}")
    importance = ELEMENT_TRANSFORMS[spec.elements](importance, group_by_layer(importance, reg_cfg["granularity"]), seed)
    importance = NORMALIZATIONS[spec.normalization(cfg)](importance)
    mode = reg_cfg["layer_coef"] if spec.layer_coef == "config" else spec.layer_coef
    return Regularizer(
        modules,
        importance,
        spec.strength(cfg),
        mode,
        reg_cfg["tau"],
        reg_cfg["granularity"],
        refs,
        layer_norm=reg_cfg["layer_norm"],
        layer_scale=reg_cfg["layer_scale"],
        uniform_coef=reg_cfg["uniform_coef"],
    )


def mix_replay(
    domain_rows: list[dict], general_rows: list[dict], fraction: float, seed: int
) -> tuple[list[dict], dict]:
    """Domain items plus round(n * f / (1 - f)) general items drawn with a fixed seed, so general
    examples make up `fraction` of every epoch (the Trainer shuffles them into the batches)."""
    import random

    n_general = round(len(domain_rows) * fraction / (1 - fraction))
    if n_general > len(general_rows):
        raise ConfigError(f"replay needs {n_general} general items but only {len(general_rows)} exist")
    chosen = random.Random(seed).sample(general_rows, n_general)
    info = {"fraction": fraction, "n_domain": len(domain_rows), "n_general": n_general}
    return domain_rows + chosen, info


def _init_lora(model, cfg: dict, init_adapter: str | Path | None):
    """A fresh LoRA (`phase2_init: base`), or phase 1's adapter `init_adapter` continued (`phase1`).

    With `phase1`, theta* is the phase-1 model, so each module's reference delta is phase 1's
    `scaling * B @ A` and the penalty acts on (delta - reference). Returns (model, refs or None).
    """
    if init_adapter is None:
        return wrap_lora(model, cfg["lora"]), None
    from peft import PeftModel

    model = PeftModel.from_pretrained(model, init_adapter, is_trainable=True)
    with torch.no_grad():
        refs = {n: m.get_delta_weight("default").float().clone() for n, m in lora_modules(model).items()}
    return model, refs


def _train_files(data_dir: str | Path, domain: str, replay: bool) -> list[Path]:
    """The domain's train split, then (replay) the general text's train split: the same natural text
    phase 1 tunes on, never the text the general NLL measures."""
    _check_domain(data_dir, domain)
    files = [Path(data_dir) / domain / "train.jsonl"]
    return files + ([Path(data_dir) / GENERAL_TEXT / "train.jsonl"] if replay else [])


def _hook_files(spec: Method, data_dir: str | Path) -> list[Path]:
    """The train splits the method's loss hook reads (`Method.hook_data`)."""
    return [Path(data_dir) / name / "train.jsonl" for name in spec.hook_data]


def _check_domain(data_dir, domain: str) -> None:
    """The job's config holds only the sections it reads, so `--domain` is checked against the datasets the
    prepared data holds (its manifest)."""
    manifest = Path(data_dir) / "manifest.json"
    if not manifest.is_file():
        return  # the train split's own check says how to build the data
    datasets = read_json(manifest)["datasets"]
    built = sorted(n for n, d in datasets.items() if n != GENERAL_TEXT and "train" in d["splits"])
    if domain in datasets and domain not in built:
        raise ConfigError(
            f"--domain {domain!r} is a general task (test items only), not a domain; the domains built in "
            f"{data_dir}: {', '.join(built)}"
        )
    if domain not in built:
        raise ConfigError(
            f"--domain {domain!r} is not a dataset of {data_dir}{did_you_mean(domain, built)} (built: "
            f"{', '.join(built)}); a new domain goes under data.domains and `alr prepare-data` builds it"
        )


def _check_inputs(spec: Method, cfg: dict, model_dir, importance_path, init_adapter, hook_files, model_out) -> None:
    """Refuse a missing or mismatched input, and a `model_out` folder this command may not replace
    (alr.core.io.check_replaceable), before the model is loaded."""
    check_model_dir(model_dir)
    check_replaceable(model_out, KIND)
    for path in hook_files:
        if not Path(path).exists():
            raise FileNotFoundError(
                f"method {spec.name!r} reads {path}, which does not exist; build it with "
                "`alr prepare-data` (or `snakemake prepare_data`)"
            )
    if spec.uses_lora:
        check_lora_targets(model_dir, cfg["lora"]["targets"])
    est = spec.estimator
    if est is None and importance_path is not None:
        raise ConfigError(f"method {spec.name!r} uses no importance file; drop --importance {importance_path}")
    if est is not None:
        if importance_path is None:
            raise ConfigError(
                f"method {spec.name!r} needs an importance file (--importance {importance_file('<model>', est.name)})"
            )
        # a LoRA-shaped file must match lora.targets; a full-model-shaped one has every weight
        targets = cfg["lora"]["targets"] if est.lora_shaped else None
        settings = {name: cfg[name] for name in est.shared_sections}
        check_importance_file(importance_path, model_fingerprint(model_dir), targets, est.name, settings)
        check_safetensors(importance_path, f"alr importance --estimator {est.name}")
    if init_adapter is not None and not spec.continues_phase1(cfg):
        raise ConfigError(
            f"--init-adapter is read only by LoRA methods with regularize.phase2_init: phase1; "
            f"method {spec.name!r} would ignore it: drop it"
        )
    if spec.continues_phase1(cfg):
        if init_adapter is None:
            raise ConfigError("regularize.phase2_init is 'phase1' but no phase-1 adapter was given (--init-adapter)")
        if not (Path(init_adapter) / "adapter_model.safetensors").exists():
            raise FileNotFoundError(
                f"phase-1 adapter {init_adapter} does not exist; build it with `alr importance` "
                "(or `snakemake` the importance rule)"
            )
        check_safetensors(Path(init_adapter) / "adapter_model.safetensors", "alr importance")
        if spec.continues_phase1_optimizer(cfg) and not (Path(init_adapter) / OPTIMIZER_STATE).exists():
            raise FileNotFoundError(
                f"regularize.phase2_optimizer is 'phase1' but {init_adapter} holds no "
                f"{OPTIMIZER_STATE} (made before phase 1 kept its optimizer state): rebuild it "
                "with `alr importance` (or delete the importance file and rerun snakemake)"
            )


def _run_identity(
    spec: Method, domain: str, seed: int, model_dir, config: dict, files: list[Path], importance_path, init_adapter
) -> dict:
    """What a checkpoint must share with this run to be resumed (checkpoint_steps may change)."""
    train = {k: v for k, v in config["train"].items() if k != "checkpoint_steps"}
    return {
        "method": spec.name,
        "domain": domain,
        "seed": seed,
        "model": model_fingerprint(model_dir),
        "config": {**config, "train": train},
        "data": {f"{p.parent.name}/{p.name}": sha256_file(p) for p in files},
        "importance": sha256_file(importance_path) if importance_path else None,
        "init_adapter": sha256_file(Path(init_adapter) / "adapter_model.safetensors") if init_adapter else None,
    }


def _read_settings(run: Run) -> dict:
    """The keys the run reads (`Method.config_keys`) as it reads them: what train.json records and a
    resumed checkpoint must match; its `train` holds the method's learning rate."""
    spec = run.method
    if not spec.trains:
        how = (
            f"`alr evaluate --weights <{spec.weights_from} run>/model --delta-scale <beta>` scores it from "
            f"{spec.weights_from}'s weights"
            if spec.weights_from
            else "`alr evaluate` without --weights scores it"
        )
        raise ConfigError(f"method {spec.name!r} does not train, so `alr finetune` has nothing to do: {how}")
    read = section(run.config, *spec.config_keys)
    read["train"] = dict(run.config["train"], lr=spec.learning_rate(run.config))
    return read


def _train_rows(spec: Method, cfg: dict, files: list[Path], seed: int) -> tuple[list[dict], dict | None]:
    """The domain's items, with the replayed general texts mixed in for a replay method; and the
    replay record (None without replay)."""
    rows = read_records(files[0], "mc")
    if not spec.replay_key:
        return rows, None
    return mix_replay(rows, read_records(files[1], "text"), spec.replay_fraction(cfg), seed)


def _load_model(spec: Method, cfg: dict, model_dir, init_adapter):
    """(model, tokenizer, refs): the base model, with its LoRA for a LoRA method; refs are phase 1's
    deltas when the run continues phase 1's adapter, else None."""
    model, tok = load_base(model_dir, cfg["model"]["dtype"])
    refs = None
    if spec.uses_lora:
        model, refs = _init_lora(model, cfg, init_adapter)
    return model, tok, refs


def _phase1_optimizer_state(spec: Method, cfg: dict, init_adapter) -> dict | None:
    """Phase 1's saved optimizer state when the run continues it (regularize.phase2_optimizer: phase1)."""
    if not spec.continues_phase1_optimizer(cfg):
        return None
    return torch.load(Path(init_adapter) / OPTIMIZER_STATE, map_location="cpu", weights_only=True)


def _features(rows: list[dict], tok, train_cfg: dict) -> list:
    """Tokenized training examples: the multiple-choice items as (prompt, answer) pairs, then the replayed texts."""
    features = tokenize_pairs(
        (mc_to_pair(r) for r in rows if "choices" in r), tok, train_cfg["max_length"], train_cfg["loss_on"]
    )
    features += tokenize_texts((r["text"] for r in rows if "text" in r), tok, train_cfg["max_length"])  # replay
    return features


def _train(
    model,
    tok,
    features: list,
    train_cfg: dict,
    seed: int,
    out_dir: Path,
    resume,
    regularizer,
    loss_hook,
    optimizer_state,
) -> dict:
    """Run the Trainer (checkpointing into out_dir/checkpoints/ when train.checkpoint_steps > 0, else
    into a scratch folder); its statistics, with the final weights' penalty under a regularizer."""
    save_steps = train_cfg.get("checkpoint_steps", 0)
    with tempfile.TemporaryDirectory(prefix="alr-trainer-") as scratch:
        trainer_dir = str(checkpoint_dir(out_dir)) if save_steps else scratch
        args = training_arguments(
            train_cfg, seed, trainer_dir, save_steps=save_steps, tracking=training_tracking(out_dir)
        )
        stats = run_trainer(
            model,
            tok,
            features,
            args,
            regularizer=regularizer,
            resume_from=resume,
            loss_hook=loss_hook,
            optimizer_state=optimizer_state,
        )
    if regularizer is not None:
        with torch.no_grad():
            stats["final_reg"] = float(regularizer())  # penalty of the final weights (refreshes per-layer values)
    return stats


def _save_run(model, record: dict, out_dir: Path, save_steps: int, model_dir: str | Path) -> None:
    """Write model/ and train.json atomically, then drop the checkpoints."""
    name_hub_base(model, model_dir)
    with atomic_dir(out_dir / "model", KIND) as tmp:
        model.save_pretrained(tmp)
    write_json(out_dir / "train.json", record)
    if save_steps:
        remove(checkpoint_dir(out_dir))


def _log_run(record: dict, resumed: bool) -> None:
    log.info(
        "trained %s on %s (seed %d): %d steps%s, %.1f s, CE %.4f -> %.4f, reg %s",
        record["method"],
        record["domain"],
        record["seed"],
        record["steps"],
        f" (resumed from step {record['resumed_from_step']})" if resumed else "",
        record["wall_time_s"],
        record["first_ce"] or float("nan"),
        record["final_ce"] or float("nan"),
        record["final_reg"],
    )


def finetune(
    run: Run,
    model_dir: str | Path,
    data_dir: str | Path,
    domain: str,
    seed: int,
    out_dir: str | Path,
    importance_path: str | Path | None = None,
    init_adapter: str | Path | None = None,
) -> dict:
    """Tune `run` (alr.methods.runs.resolve_run: a method, or a sweep run `<method>-<tag><value>`) on the
    domain's train split; write `out_dir/model/` and `out_dir/train.json` atomically.

    Every input, and an existing `out_dir/model/`, is checked before the model is loaded. With
    `train.checkpoint_steps` > 0 the Trainer checkpoints into `out_dir/checkpoints/`, a re-run resumes
    from there (see `alr.model.checkpoints`), and the folder is removed once the outputs are written."""
    from transformers import set_seed

    spec, cfg, out_dir = run.method, run.config, Path(out_dir)
    read = _read_settings(run)
    train_cfg = read["train"]
    hook_files = _hook_files(spec, data_dir)
    _check_inputs(spec, cfg, model_dir, importance_path, init_adapter, hook_files, out_dir / "model")
    files = _train_files(data_dir, domain, bool(spec.replay_key))
    rows, replay = _train_rows(spec, cfg, files, seed)
    save_steps = train_cfg.get("checkpoint_steps", 0)
    identity = (spec, domain, seed, model_dir, read, files + hook_files, importance_path, init_adapter)
    resume = resume_point(checkpoint_dir(out_dir), _run_identity(*identity)) if save_steps else None
    set_seed(seed)
    model, tok, refs = _load_model(spec, cfg, model_dir, init_adapter)
    optimizer_state = _phase1_optimizer_state(spec, cfg, init_adapter)
    regularizer = (
        _build_regularizer(spec, cfg, model, model_dir, importance_path, seed, refs) if spec.regularised else None
    )
    context = HookContext(model=model, tok=tok, cfg=cfg, data_dir=Path(data_dir), seed=seed)
    loss_hook = spec.loss_hook(context) if spec.loss_hook else None  # built once, called per micro-batch
    features = _features(rows, tok, train_cfg)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    stats = _train(model, tok, features, train_cfg, seed, out_dir, resume, regularizer, loss_hook, optimizer_state)
    record = dict(method=spec.name, run=run.name, domain=domain, seed=seed, **stats, trainable_params=n_trainable)
    record.update(
        layer_coefficients=regularizer.coefficients if regularizer else None,
        layer_penalties=regularizer.layer_penalties if regularizer else None,
        importance=str(importance_path) if importance_path else spec.importance,
        init_adapter=str(init_adapter) if refs is not None else None,
        optimizer_from_phase1=optimizer_state is not None,
        replay=replay,
        config=read,
        provenance=provenance(read),
    )
    if not is_main_process():  # under DDP the ranks hold the same weights; rank 0 writes them
        return record
    _save_run(model, record, out_dir, save_steps, model_dir)
    _log_run(record, resume is not None)
    return record

"""Training through the transformers Trainer: the one trainer both phases use (phase 1 recorders
live in `alr.importance.record`), and phase 2, domain fine-tuning, optionally regularised.

    alr finetune --config config/config.yaml --model-dir resources/models/<m> --data-dir resources/data \
        --domain physics --method alr --seed 0 --importance results/<m>/importance/si.safetensors \
        --out results/<m>/physics/alr/seed0
"""
from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path

import torch

from .assets import check_lora_targets, check_model_dir
from .checkpoints import checkpoint_dir, checkpoint_step, no_final_checkpoint_callback, remove, resume_point
from .config import section
from .data import mc_to_pair, read_records, tokenize_pairs
from .dist import is_main_process
from .importance.store import check_importance_file, load_importance, model_fingerprint
from .io import atomic_dir, sha256_file, write_json
from .measure import Timer, peak_mem_mb, provenance, reset_peak_memory
from .methods import Method, get_method
from .models import load_base, lora_modules, wrap_lora
from .regularize import Regularizer, group_by_layer, layer_mean_importance, normalise_mean

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    pass


def _finite_loss_callback():
    from transformers import TrainerCallback

    class StopOnNonFiniteLoss(TrainerCallback):
        """Fail loudly (no output is written) instead of training on through NaN/Inf.

        Runs at each step's log, before the Trainer's checkpoint save, so no NaN state is saved."""

        watched = ("loss", "reg", "grad_norm")

        def __init__(self):
            self.last_finite = {}

        def on_log(self, args, state, control, logs=None, **kwargs):
            values = {k: (logs or {})[k] for k in self.watched if (logs or {}).get(k) is not None}
            bad = {k: v for k, v in values.items() if not math.isfinite(v)}
            if bad:
                last = (f"last finite values (step {self.last_finite['step']}): "
                        + ", ".join(f"{k} {v:.6g}" for k, v in self.last_finite.items() if k != "step")
                        if self.last_finite else "no step before it was finite")
                raise NonFiniteLossError(
                    f"training {', '.join(f'{k} became {v}' for k, v in bad.items())} at step {state.global_step}; "
                    f"{last}; "
                    "no model or train.json was written (lower train.lr, or check the data and importance file)")
            if "loss" in values:
                self.last_finite = {"step": state.global_step, **values}

    return StopOnNonFiniteLoss()


def training_arguments(train_cfg: dict, seed: int, output_dir: str, epochs: float | None = None,
                       max_steps: int | None = None, save_steps: int = 0):
    """`save_steps` > 0: a checkpoint in output_dir every that many optimizer steps, the newest kept."""
    from transformers import TrainingArguments

    saving = {"save_strategy": "steps", "save_steps": save_steps, "save_total_limit": 1} if save_steps else \
        {"save_strategy": "no"}

    return TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=train_cfg["batch_size"],
        gradient_accumulation_steps=train_cfg["grad_accum"],
        learning_rate=train_cfg["lr"],
        weight_decay=train_cfg["weight_decay"],
        num_train_epochs=train_cfg["epochs"] if epochs is None else epochs,
        max_steps=train_cfg["max_steps"] if max_steps is None else max_steps,
        lr_scheduler_type=train_cfg["lr_scheduler"],
        warmup_steps=train_cfg["warmup_ratio"],
        max_grad_norm=train_cfg["max_grad_norm"],
        optim="adamw_torch_fused",  # shared notes: 0.07 s vs 0.30 s (default AdamW) per step on the 2-core CPU
        # explicit on CPU-only machines: otherwise `torchrun` there gives every process its own
        # undistributed Trainer instead of DDP over gloo (tests/test_distributed.py)
        use_cpu=not torch.cuda.is_available(),
        logging_steps=1,
        logging_nan_inf_filter=False,  # let the finite-loss check see a NaN instead of skipping it
        **saving,
        report_to=[],
        seed=seed,
        data_seed=seed,
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
        disable_tqdm=False,
    )


def _regularised_trainer_class():
    from transformers import Trainer

    class RegularisedTrainer(Trainer):
        """Adds `regularizer()` to the task loss once per optimizer step's worth of loss.

        The Trainer divides each micro-batch loss by the accumulation steps unless the model already
        normalised it over the whole accumulated batch (`num_items_in_batch`); the penalty is scaled
        to match, so k micro-batches see it exactly once in total.
        """

        def __init__(self, *args, regularizer=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.regularizer = regularizer
            self._reg_sum, self._reg_count = 0.0, 0

        def _task_loss_is_ga_scaled(self, num_items_in_batch) -> bool:
            if self.loss_is_scaled_for_ga is not None:
                return self.loss_is_scaled_for_ga
            return (self.model_accepts_loss_kwargs and num_items_in_batch is not None) or self.compute_loss_func is not None

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
            if self.regularizer is not None and model.training:
                reg = self.regularizer()
                self._reg_sum += float(reg.detach())
                self._reg_count += 1
                if self._task_loss_is_ga_scaled(num_items_in_batch):
                    reg = reg / self.current_gradient_accumulation_steps
                loss = loss + reg.to(loss.dtype)
            return (loss, outputs) if return_outputs else loss

        def log(self, logs, *args, **kwargs):
            if self._reg_count and "loss" in logs:
                logs["reg"] = self._reg_sum / self._reg_count
                self._reg_sum, self._reg_count = 0.0, 0
            super().log(logs, *args, **kwargs)

    return RegularisedTrainer


def run_trainer(model, tok, features: list[dict], args, callbacks=(), regularizer=None,
                resume_from: str | None = None) -> dict:
    """Train; `resume_from` is a checkpoint folder whose weights, optimizer, scheduler, RNG states
    and step the Trainer restores (it also skips the batches already seen in the current epoch)."""
    from transformers import DataCollatorForSeq2Seq

    trainer = _regularised_trainer_class()(
        model=model,
        args=args,
        train_dataset=features,  # a list is a map-style dataset; the sampler's order is the same
        data_collator=DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100),
        callbacks=[_finite_loss_callback(), *callbacks,
                   *([no_final_checkpoint_callback()] if args.save_strategy == "steps" else [])],
        regularizer=regularizer,
    )
    reset_peak_memory()
    with Timer() as timer:
        trainer.train(resume_from_checkpoint=resume_from)
    state = trainer.state
    resumed = checkpoint_step(resume_from) if resume_from else 0
    history = state.log_history
    losses = [h["loss"] for h in history if "loss" in h]
    regs = [h["reg"] for h in history if "reg" in h]
    return {
        "steps": state.global_step,
        "epochs": state.epoch,
        "examples": len(features),
        "tokens": int(state.num_input_tokens_seen),
        "wall_time_s": round(timer.seconds, 3),
        "step_time_s": round(timer.seconds / max(state.global_step - resumed, 1), 4),
        "resumed_from_step": resumed or None,  # wall time and step time then cover this process only
        "peak_mem_mb": peak_mem_mb(),
        "first_ce": losses[0] - (regs[0] if regs else 0.0) if losses else None,
        "final_ce": losses[-1] - (regs[-1] if regs else 0.0) if losses else None,
        "final_reg": regs[-1] if regs else None,
    }


def _build_regularizer(spec: Method, cfg: dict, model, model_dir, importance_path, refs=None) -> Regularizer:
    reg_cfg = cfg["regularize"]
    if spec.adapter == "lora":
        modules = lora_modules(model)
        shapes = {n: tuple(m.get_base_layer().weight.shape) for n, m in modules.items()}
    else:  # full fine-tuning: every trainable parameter, theta* = its starting value
        modules = {n: p for n, p in model.named_parameters() if p.requires_grad}
        shapes = {n: tuple(p.shape) for n, p in modules.items()}
        refs = {n: p.detach().float().clone() for n, p in modules.items()}
    dev = next(model.parameters()).device
    if spec.importance_file:
        # the Fisher file is full-model-shaped and parameter-named: read the adapted modules' weights
        suffix = ".weight" if spec.importance == "fisher" else ""
        importance, _ = load_importance(importance_path, shapes, model_fingerprint(model_dir), dev, suffix)
    elif spec.importance == "uniform":
        importance = {n: torch.ones(s, device=dev) for n, s in shapes.items()}
    else:
        raise ValueError(f"method {spec.name!r} has unknown importance {spec.importance!r}")
    if not spec.element_wise:
        importance = layer_mean_importance(importance, group_by_layer(importance, reg_cfg["granularity"]))
    if spec.penalty == "fisher":  # EWC as the original: raw Fisher, its own lambda
        lam = cfg["fisher"]["lambda"]
    else:
        lam = reg_cfg["lambda"]
        if reg_cfg["normalize"] == "mean":
            importance = normalise_mean(importance)
    mode = reg_cfg["layer_coef"] if spec.layer_coef == "config" else spec.layer_coef
    return Regularizer(modules, importance, lam, mode, reg_cfg["tau"], reg_cfg["granularity"], refs)


def mix_replay(domain_rows: list[dict], general_rows: list[dict], fraction: float, seed: int) -> tuple[list[dict], dict]:
    """Domain items plus round(n * f / (1 - f)) general items drawn with a fixed seed, so general
    examples make up `fraction` of every epoch (the Trainer shuffles them into the batches)."""
    import random

    n_general = round(len(domain_rows) * fraction / (1 - fraction))
    if n_general > len(general_rows):
        raise ValueError(f"replay needs {n_general} general items but only {len(general_rows)} exist")
    chosen = random.Random(seed).sample(general_rows, n_general)
    info = {"fraction": fraction, "n_domain": len(domain_rows), "n_general": n_general}
    return domain_rows + chosen, info


def _init_lora(model, cfg: dict, init_adapter: str | Path | None):
    """A fresh LoRA (`phase2_init: base`), or phase 1's adapter continued (`phase2_init: phase1`).

    With `phase1`, theta* is the phase-1 model, so each module's reference delta is phase 1's
    `scaling * B @ A` and the penalty acts on (delta - reference). Returns (model, refs or None).
    """
    if cfg["regularize"]["phase2_init"] == "base":
        return wrap_lora(model, cfg["lora"]), None
    from peft import PeftModel

    model = PeftModel.from_pretrained(model, init_adapter, is_trainable=True)
    with torch.no_grad():
        refs = {n: m.get_delta_weight("default").float().clone() for n, m in lora_modules(model).items()}
    return model, refs


def _train_files(cfg: dict, data_dir: str | Path, domain: str, replay: bool) -> list[Path]:
    files = [Path(data_dir) / domain / "train.jsonl"]
    if replay:
        files += [Path(data_dir) / name / "train.jsonl" for name in cfg["data"]["general"]["tasks"]
                  if (Path(data_dir) / name / "train.jsonl").exists()]
    return files


def _check_inputs(spec: Method, cfg: dict, model_dir, importance_path, init_adapter) -> None:
    """Refuse a missing or mismatched input before the model is loaded."""
    check_model_dir(model_dir)
    if spec.adapter == "lora":
        check_lora_targets(model_dir, cfg["lora"]["targets"])
    estimator = spec.importance_file
    if estimator is None and importance_path is not None:
        raise ValueError(f"method {spec.name!r} uses no importance file; drop --importance {importance_path}")
    if estimator is not None:
        if importance_path is None:
            raise ValueError(f"method {spec.name!r} needs an importance file (--importance "
                             f"results/<model>/importance/{estimator}.safetensors)")
        # a LoRA-shaped file must match lora.targets; the Fisher file is full-model-shaped
        targets = cfg["lora"]["targets"] if estimator in ("si", "mas") else None
        settings = {"importance": cfg["importance"]} if estimator in ("si", "si_full") else None
        check_importance_file(importance_path, model_fingerprint(model_dir), targets, estimator, settings)
    if init_adapter is not None and not _continues_phase1(spec, cfg):
        raise ValueError(f"--init-adapter is read only by LoRA methods with regularize.phase2_init: phase1; "
                         f"method {spec.name!r} would ignore it: drop it")
    if _continues_phase1(spec, cfg):
        if init_adapter is None:
            raise ValueError("regularize.phase2_init is 'phase1' but no phase-1 adapter was given (--init-adapter)")
        if not (Path(init_adapter) / "adapter_model.safetensors").exists():
            raise FileNotFoundError(f"phase-1 adapter {init_adapter} does not exist; build it with `alr importance` "
                                    "(or `snakemake` the importance rule)")


def _continues_phase1(spec: Method, cfg: dict) -> bool:
    return spec.adapter == "lora" and cfg["regularize"]["phase2_init"] == "phase1"


def _run_identity(spec: Method, domain: str, seed: int, model_dir, config: dict, files: list[Path],
                  importance_path, init_adapter) -> dict:
    """What a checkpoint must share with this run to be resumed (checkpoint_steps may change)."""
    train = {k: v for k, v in config["train"].items() if k != "checkpoint_steps"}
    return {
        "method": spec.name, "domain": domain, "seed": seed, "model": model_fingerprint(model_dir),
        "config": {**config, "train": train},
        "data": {f"{p.parent.name}/{p.name}": sha256_file(p) for p in files},
        "importance": sha256_file(importance_path) if importance_path else None,
        "init_adapter": sha256_file(Path(init_adapter) / "adapter_model.safetensors") if init_adapter else None,
    }


def finetune(cfg: dict, model_dir: str | Path, data_dir: str | Path, domain: str, method: str, seed: int,
             out_dir: str | Path, importance_path: str | Path | None = None,
             init_adapter: str | Path | None = None) -> dict:
    """Tune on the domain's train split; write `out_dir/model/` and `out_dir/train.json` atomically.

    Every input is checked before the model is loaded. With `train.checkpoint_steps` > 0 the Trainer
    checkpoints into `out_dir/checkpoints/`, a re-run resumes from there (see `alr.checkpoints`),
    and the folder is removed once the outputs are written."""
    from transformers import set_seed

    spec = get_method(method)
    if not spec.trains:
        raise ValueError(f"method {method!r} does not train")
    config = section(cfg, *spec.config_sections)  # what this run reads, recorded as it reads it
    train_cfg = config["train"] = dict(cfg["train"])
    if spec.adapter is None:
        train_cfg["lr"] = cfg["baselines"]["full_ft_lr"]
    _check_inputs(spec, cfg, model_dir, importance_path, init_adapter)
    files = _train_files(cfg, data_dir, domain, spec.replay)
    rows = read_records(files[0], "mc")
    replay = None
    if spec.replay:
        general = [r for f in files[1:] for r in read_records(f, "mc")]
        rows, replay = mix_replay(rows, general, cfg["baselines"]["replay_fraction"], seed)
    out_dir = Path(out_dir)
    save_steps = train_cfg.get("checkpoint_steps", 0)
    resume = None
    if save_steps:
        identity = _run_identity(spec, domain, seed, model_dir, config, files, importance_path,
                                 init_adapter if _continues_phase1(spec, cfg) else None)
        resume = resume_point(checkpoint_dir(out_dir), identity)
    set_seed(seed)
    model, tok = load_base(model_dir, cfg["model"]["dtype"])
    refs = None
    if spec.adapter == "lora":
        model, refs = _init_lora(model, cfg, init_adapter)
    regularizer = _build_regularizer(spec, cfg, model, model_dir, importance_path, refs) if spec.regularised else None
    features = tokenize_pairs((mc_to_pair(r) for r in rows), tok, train_cfg["max_length"], train_cfg["loss_on"])
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    with tempfile.TemporaryDirectory(prefix="alr-trainer-") as scratch:
        trainer_dir = str(checkpoint_dir(out_dir)) if save_steps else scratch
        args = training_arguments(train_cfg, seed, trainer_dir, save_steps=save_steps)
        stats = run_trainer(model, tok, features, args, regularizer=regularizer, resume_from=resume)
    if regularizer is not None:
        with torch.no_grad():
            stats["final_reg"] = float(regularizer())  # penalty of the final weights (refreshes per-layer values)
    record = {
        "method": method,
        "domain": domain,
        "seed": seed,
        **stats,
        "trainable_params": n_trainable,
        "layer_coefficients": regularizer.coefficients if regularizer else None,
        "layer_penalties": regularizer.layer_penalties if regularizer else None,
        "importance": str(importance_path) if importance_path else spec.importance,
        "init_adapter": str(init_adapter) if refs is not None else None,
        "replay": replay,
        "config": config,
        "provenance": provenance(config),
    }
    if not is_main_process():  # under DDP the ranks hold the same weights; rank 0 writes them
        return record
    with atomic_dir(out_dir / "model") as tmp:
        model.save_pretrained(tmp)
    write_json(out_dir / "train.json", record)
    if save_steps:
        remove(checkpoint_dir(out_dir))
    log.info("trained %s on %s (seed %d): %d steps%s, %.1f s, CE %.4f -> %.4f, reg %s", method, domain, seed,
             record["steps"], f" (resumed from step {stats['resumed_from_step']})" if resume else "",
             record["wall_time_s"], record["first_ce"] or float("nan"), record["final_ce"] or float("nan"),
             record["final_reg"])
    return record

"""Domain fine-tuning through the transformers Trainer (one entry point for every trained method).

    alr finetune --config config/config.yaml --model-dir resources/models/smollm2-135m-instruct \
        --data-dir resources/data --domain physics --method lora --seed 0 \
        --out results/smollm2-135m-instruct/physics/lora/seed0
"""
from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path

from .data import mc_to_pair, read_records, tokenize_pairs
from .io import atomic_dir, write_json
from .measure import Timer, peak_mem_mb, provenance, reset_peak_memory
from .methods import get_method
from .models import load_base, wrap_lora

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    pass


def _finite_loss_callback():
    from transformers import TrainerCallback

    class StopOnNonFiniteLoss(TrainerCallback):
        """Fail loudly (no output is written) instead of training on through NaN/Inf."""

        last_finite: float | None = None

        def on_log(self, args, state, control, logs=None, **kwargs):
            loss = (logs or {}).get("loss")
            if loss is None:
                return
            if not math.isfinite(loss):
                raise NonFiniteLossError(f"training loss became {loss} at step {state.global_step} "
                                         f"(last finite loss: {self.last_finite}); nothing was saved")
            self.last_finite = loss

    return StopOnNonFiniteLoss()


def training_arguments(train_cfg: dict, seed: int, output_dir: str):
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=train_cfg["batch_size"],
        gradient_accumulation_steps=train_cfg["grad_accum"],
        learning_rate=train_cfg["lr"],
        weight_decay=train_cfg["weight_decay"],
        num_train_epochs=train_cfg["epochs"],
        max_steps=train_cfg["max_steps"],
        lr_scheduler_type=train_cfg["lr_scheduler"],
        warmup_steps=train_cfg["warmup_ratio"],
        max_grad_norm=train_cfg["max_grad_norm"],
        optim="adamw_torch_fused",  # measured: fused AdamW steps 0.07 s vs 0.30 s default on this CPU
        logging_steps=1,
        logging_nan_inf_filter=False,  # let the finite-loss check see a NaN instead of skipping it
        save_strategy="no",
        report_to=[],
        seed=seed,
        data_seed=seed,
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
        disable_tqdm=False,
    )


def finetune(cfg: dict, model_dir: str | Path, data_dir: str | Path, domain: str, method: str, seed: int,
             out_dir: str | Path) -> dict:
    """Tune on the domain's train split; write `out_dir/model/` and `out_dir/train.json` atomically."""
    from transformers import DataCollatorForSeq2Seq, Trainer, set_seed

    spec = get_method(method)
    if not spec.trains:
        raise ValueError(f"method {method!r} does not train")
    train_cfg = cfg["train"]
    rows = read_records(Path(data_dir) / domain / "train.jsonl", "mc")
    set_seed(seed)
    model, tok = load_base(model_dir, cfg["model"]["dtype"])
    if spec.adapter == "lora":
        model = wrap_lora(model, cfg["lora"])
    features = tokenize_pairs((mc_to_pair(r) for r in rows), tok, train_cfg["max_length"], train_cfg["loss_on"])
    from datasets import Dataset

    dataset = Dataset.from_list(features)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="alr-trainer-") as scratch:
        trainer = Trainer(
            model=model,
            args=training_arguments(train_cfg, seed, scratch),
            train_dataset=dataset,
            data_collator=DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100),
            callbacks=[_finite_loss_callback()],
        )
        reset_peak_memory()
        with Timer() as timer:
            trainer.train()
    state = trainer.state
    losses = [h["loss"] for h in state.log_history if "loss" in h]
    record = {
        "method": method,
        "domain": domain,
        "seed": seed,
        "steps": state.global_step,
        "epochs": state.epoch,
        "examples": len(features),
        "tokens": int(state.num_input_tokens_seen),
        "trainable_params": n_trainable,
        "wall_time_s": round(timer.seconds, 3),
        "step_time_s": round(timer.seconds / max(state.global_step, 1), 4),
        "peak_mem_mb": peak_mem_mb(),
        "first_ce": losses[0] if losses else None,
        "final_ce": losses[-1] if losses else None,
        "final_reg": None,
        "layer_coefficients": None,
        "config": {k: cfg[k] for k in ("model", "lora", "train") if k in cfg},
        "provenance": provenance(),
    }
    with atomic_dir(out_dir / "model") as tmp:
        model.save_pretrained(tmp)
    write_json(out_dir / "train.json", record)
    log.info("trained %s on %s (seed %d): %d steps, %.1f s, CE %.4f -> %.4f", method, domain, seed,
             record["steps"], timer.seconds, record["first_ce"] or float("nan"), record["final_ce"] or float("nan"))
    return record

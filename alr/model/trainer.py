"""The one training loop of alr: the transformers Trainer with a finite-loss check, an optional penalty
added once per optimizer step, and the statistics every record keeps. Phase 1 (`alr.importance.record`),
phase 2 (`alr.finetune.run`) and the benchmarks (`benchmarks/bench.py`) all train through `run_trainer`.
"""

from __future__ import annotations

import math

import torch

from ..core.measure import Timer, peak_mem_mb, reset_peak_memory
from ..core.sections import REPORT_TO_ENV
from .checkpoints import checkpoint_step, no_final_checkpoint_callback
from .load import accepts_logits_to_keep


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
                last = (
                    f"last finite values (step {self.last_finite['step']}): "
                    + ", ".join(f"{k} {v:.6g}" for k, v in self.last_finite.items() if k != "step")
                    if self.last_finite
                    else "no step before it was finite"
                )
                raise NonFiniteLossError(
                    f"training {', '.join(f'{k} became {v}' for k, v in bad.items())} at step {state.global_step}; "
                    f"{last}; "
                    "no model or train.json was written (lower train.lr, or check the data and importance file)"
                )
            if "loss" in values:
                self.last_finite = {"step": state.global_step, **values}

    return StopOnNonFiniteLoss()


TRACKERS = ("tensorboard", "wandb")  # train.report_to's trackers, each the name of the package it needs


def report_to(train_cfg: dict) -> str:
    """Where the Trainer sends its metrics (`train.report_to`: none, tensorboard or wandb): the workflow's
    ALR_REPORT_TO, else the config's own key; refused with the fix when its package is not installed."""
    import importlib.util
    import os

    from ..core.errors import ConfigError

    value = os.environ.get(REPORT_TO_ENV) or train_cfg.get("report_to", "none")
    if value == "none":
        return value
    if value not in TRACKERS:
        raise ConfigError(f"train.report_to must be none, {' or '.join(TRACKERS)}; got {value!r}")
    if importlib.util.find_spec(value) is None:
        raise ConfigError(f"train.report_to: {value} needs the {value} package: pip install {value}")
    return value


def training_arguments(
    train_cfg: dict,
    seed: int,
    output_dir: str,
    epochs: float | None = None,
    max_steps: int | None = None,
    save_steps: int = 0,
    tracking: tuple[str, str] | None = None,
):
    """`save_steps` > 0: a checkpoint in output_dir every that many optimizer steps, the newest kept.
    `tracking` (run name, folder): what `train.report_to` names the run and where TensorBoard writes."""
    import os

    from transformers import TrainingArguments

    tracker = report_to(train_cfg)
    if tracker == "tensorboard" and tracking is not None:
        os.environ["TENSORBOARD_LOGGING_DIR"] = tracking[1]  # the Trainer's callback reads it

    saving = (
        {"save_strategy": "steps", "save_steps": save_steps, "save_total_limit": 1}
        if save_steps
        else {"save_strategy": "no"}
    )

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
        report_to=[] if tracker == "none" else [tracker],
        run_name=tracking[0] if tracking else None,
        seed=seed,
        data_seed=seed,
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
        disable_tqdm=False,
    )


def continue_optimizer_state(optimizer, saved: dict) -> None:
    """Load the per-parameter state of `saved` (an optimizer state dict over the same parameters, in
    the same groups) into `optimizer`, keeping the optimizer's own group settings."""
    current = optimizer.state_dict()
    sizes = [len(g["params"]) for g in current["param_groups"]]
    saved_sizes = [len(g["params"]) for g in saved["param_groups"]]
    if sizes != saved_sizes:
        raise ValueError(
            f"the saved optimizer state has parameter groups of sizes {saved_sizes}, this run's "
            f"optimizer {sizes}: they were not made for the same trainable parameters"
        )
    optimizer.load_state_dict({"state": saved["state"], "param_groups": current["param_groups"]})


def _task_loss_is_ga_scaled(trainer, num_items_in_batch) -> bool:
    if trainer.loss_is_scaled_for_ga is not None:
        return trainer.loss_is_scaled_for_ga
    return (
        trainer.model_accepts_loss_kwargs and num_items_in_batch is not None
    ) or trainer.compute_loss_func is not None


def _term_scale(trainer, num_items_in_batch) -> float:
    """The factor on a term added to a micro-batch's task loss (see RegularisedTrainer)."""
    return (
        1.0 / trainer.current_gradient_accumulation_steps
        if _task_loss_is_ga_scaled(trainer, num_items_in_batch)
        else 1.0
    )


def _add_term(terms: dict, name: str, value, scale: float, dtype):
    """Record a loss term in `terms` for the log (its mean over the logging window, like `loss`);
    return it scaled, in `dtype`."""
    total = terms.setdefault(name, [0.0, 0])
    total[0] += float(value.detach())
    total[1] += 1
    return (value * scale).to(dtype)


def scored_positions_only(inputs: dict) -> dict:
    """`inputs` with the output head and the loss restricted to the positions whose next token is scored.

    With `train.loss_on: answer` most positions of a batch (the prompts, the padding) carry label -100, yet
    the model projects each of them onto the vocabulary: by parameter count a fifth of a small model's
    forward and backward (SmolLM2-135M: 28 M of 135 M). transformers' `logits_to_keep` as a boolean mask
    keeps the scored positions only, and `shift_labels` gives the loss their next tokens, so the
    cross-entropy has the same terms and the same normaliser (`num_items_in_batch` or their count) as the
    model's own shifted loss. With every token scored (phase 1), the padding and each example's last
    position are still left out.
    """
    labels = inputs.get("labels")
    if labels is None:
        return inputs
    next_tokens = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=-100)  # position p predicts token p + 1
    keep = next_tokens != -100
    return {**inputs, "logits_to_keep": keep, "shift_labels": next_tokens[keep]}


def _regularised_trainer_class():
    from transformers import Trainer

    class RegularisedTrainer(Trainer):
        """Adds `regularizer()` (a penalty on the weights) and `loss_hook(model, inputs, outputs)` (a
        method's extra term, e.g. kl_lora's KL to the base model on general text) to the task loss,
        each once per optimizer step's worth of loss.

        The Trainer divides each micro-batch loss by the accumulation steps unless the model already
        normalised it over the whole accumulated batch (`num_items_in_batch`); both terms are scaled
        to match, so k micro-batches see the penalty exactly once in total and the hook's mean.
        """

        def __init__(self, *args, regularizer=None, loss_hook=None, optimizer_state=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.regularizer, self.loss_hook, self.optimizer_state = regularizer, loss_hook, optimizer_state
            self._terms = {}  # "reg" / "hook": [sum, count] of the term since the last log
            self._scores_positions = (  # the model's own loss, which reads `shift_labels`
                self.label_smoother is None
                and self.compute_loss_func is None
                and accepts_logits_to_keep(self.accelerator.unwrap_model(self.model))
            )

        def create_optimizer(self, *args, **kwargs):
            """With `optimizer_state` (phase 1's, `regularize.phase2_optimizer: phase1`): the new
            optimizer continues its moments and step counts, but keeps this run's hyper-parameters (lr,
            schedule). A checkpoint resumed later replaces both, as usual."""
            optimizer = super().create_optimizer(*args, **kwargs)
            if self.optimizer_state is not None:
                continue_optimizer_state(optimizer, self.optimizer_state)
            return optimizer

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if self._scores_positions and model.training:
                inputs = scored_positions_only(inputs)
            loss, outputs = super().compute_loss(
                model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
            )
            if not model.training:
                return (loss, outputs) if return_outputs else loss
            scale = _term_scale(self, num_items_in_batch)
            if self.regularizer is not None:
                loss = loss + _add_term(self._terms, "reg", self.regularizer(), scale, loss.dtype)
            if self.loss_hook is not None:
                loss = loss + _add_term(self._terms, "hook", self.loss_hook(model, inputs, outputs), scale, loss.dtype)
            return (loss, outputs) if return_outputs else loss

        def log(self, logs, *args, **kwargs):
            if "loss" in logs:
                for name, (total, count) in self._terms.items():
                    if count:
                        logs[name] = total / count
                self._terms.clear()
            super().log(logs, *args, **kwargs)

    return RegularisedTrainer


def run_trainer(
    model,
    tok,
    features: list[dict],
    args,
    callbacks=(),
    regularizer=None,
    resume_from: str | None = None,
    loss_hook=None,
    optimizer_state: dict | None = None,
) -> dict:
    """Train; `resume_from` is a checkpoint folder whose weights, optimizer, scheduler, RNG states
    and step the Trainer restores (it also skips the batches already seen in the current epoch);
    `optimizer_state` starts the optimizer from another run's state (`continue_optimizer_state`)."""
    from transformers import DataCollatorForSeq2Seq

    trainer = _regularised_trainer_class()(
        model=model,
        args=args,
        train_dataset=features,  # a list is a map-style dataset; the sampler's order is the same
        data_collator=DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100),
        callbacks=[
            _finite_loss_callback(),
            *callbacks,
            *([no_final_checkpoint_callback()] if args.save_strategy == "steps" else []),
        ],
        regularizer=regularizer,
        loss_hook=loss_hook,
        optimizer_state=optimizer_state,
    )
    reset_peak_memory()
    with Timer() as timer:
        trainer.train(resume_from_checkpoint=resume_from)
    state = trainer.state
    resumed = checkpoint_step(resume_from) if resume_from else 0
    history = state.log_history
    logged = [h for h in history if "loss" in h]

    def ce(entry):  # the task loss alone: the logged loss includes the penalty and the hook's term
        return entry["loss"] - entry.get("reg", 0.0) - entry.get("hook", 0.0)

    return {
        "steps": state.global_step,
        "epochs": state.epoch,
        "examples": len(features),
        "tokens": int(state.num_input_tokens_seen),
        "wall_time_s": round(timer.seconds, 3),
        "step_time_s": round(timer.seconds / max(state.global_step - resumed, 1), 4),
        "resumed_from_step": resumed or None,  # wall time and step time then cover this process only
        "peak_mem_mb": peak_mem_mb(),
        "first_ce": ce(logged[0]) if logged else None,
        "final_ce": ce(logged[-1]) if logged else None,
        "final_reg": logged[-1].get("reg") if logged else None,
        "final_hook": logged[-1].get("hook") if logged else None,  # e.g. kl_lora's weight x KL, last step
    }

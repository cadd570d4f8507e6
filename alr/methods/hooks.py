"""What a method's loss hook is built from (`alr.methods.registry.Method.loss_hook`), shared by the method
registry, the hooks (alr.methods.kl) and the fine-tune that builds them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class HookContext:
    """What a method's loss hook is built from, once per run (`Method.loss_hook(ctx)` returns the
    hook). Built after the adapter is attached and before training starts."""

    model: Any  # the model being tuned (for LoRA methods the PEFT model, not any DDP wrapper around it)
    tok: Any  # its tokenizer
    cfg: dict  # the run's config (`alr.methods.runs.Run.config`: the run's own strength)
    data_dir: Path  # the prepared datasets (`<data_dir>/<name>/train.jsonl`; see `Method.hook_data`)
    seed: int  # the run's seed


# (model, inputs, outputs) -> a scalar tensor. In training, `outputs.logits` holds the scored positions only,
# flattened to (positions, vocabulary) (`alr.model.trainer.scored_positions_only`).
LossHook = Callable[[Any, dict, Any], Any]

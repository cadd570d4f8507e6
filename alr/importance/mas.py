"""Memory Aware Synapses (MAS) importance on each adapted module's dense weight.

For a causal LM the "output function" is the logit vector at every position: per sample (batch size
1) we differentiate `mean_t ||logits_t||_2^2` with respect to W (through the same module hooks the
SI recorder uses, so W is never made trainable) and average |dF/dW| over samples. MAS needs no
labels and no optimizer steps.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .si import _LoraTarget


def mas_importance(model, features: list[dict]) -> dict[str, torch.Tensor]:
    from ..model.load import lora_modules

    targets = {n: _LoraTarget(m) for n, m in lora_modules(model).items()}
    if not targets:
        raise ValueError("the model has no LoRA layers to compute MAS importance for")
    omega = {n: torch.zeros(t.shape, dtype=torch.float32, device=t.grad.device) for n, t in targets.items()}
    device = next(model.parameters()).device
    model.eval()
    try:
        for feat in tqdm(features, desc="mas (per-sample)", mininterval=10):
            model.zero_grad(set_to_none=True)
            logits = model(input_ids=torch.tensor([feat["input_ids"]], device=device)).logits.float()
            logits.square().sum(-1).mean().backward()
            for n, t in targets.items():
                omega[n].add_(t.take_grad().abs_())
    finally:
        for t in targets.values():
            t.close()
    model.zero_grad(set_to_none=True)
    return {n: o / len(features) for n, o in omega.items()}

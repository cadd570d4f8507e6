"""Diagonal empirical Fisher information for the EWC-LoRA baseline.

Faithful to the original EWC-LoRA code (arXiv 2305.10626): per-sample (batch size 1) gradients of
the language-model loss with respect to *all* model parameters, squared and averaged over N general
samples, stored full-model-shaped in fp32. `scope: adapted` keeps only the adapted modules' weights,
to show what a leaner EWC would cost. (Squared mini-batch gradients would be cheaper but are a
different estimator; the sidecar records `per_sample: true`.)
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm


def empirical_fisher(
    model, features: list[dict], keep=None, device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """{parameter name: mean over samples of grad^2}; `keep(name)` selects the parameters stored."""
    params = {n: p for n, p in model.named_parameters() if keep is None or keep(n)}
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params.values():
        p.requires_grad_(True)
    fisher = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
    model.eval()  # no dropout: the Fisher of the model as it is
    for feat in tqdm(features, desc="fisher (per-sample)", mininterval=10):
        ids = torch.tensor([feat["input_ids"]], device=device)
        labels = torch.tensor([feat["labels"]], device=device)
        model.zero_grad(set_to_none=True)
        model(input_ids=ids, labels=labels).loss.backward()
        for n, p in params.items():
            if p.grad is not None:
                fisher[n].addcmul_(p.grad.float(), p.grad.float())
    for f in fisher.values():
        f.div_(len(features))
    model.zero_grad(set_to_none=True)
    return fisher

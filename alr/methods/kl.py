"""The `kl_lora` baseline's loss hook (LwF / self-distillation style): keep the tuned model's
next-token distributions on general text close to the base model's.

Term added to each training micro-batch: `kl.weight * KL(p_base || p_tuned)`, where for one general
batch

    KL = mean over its non-padding positions t of  sum_v p_base(v | x_<=t) (log p_base - log p_tuned)

Every non-padding position counts, the last one too: the term compares the two models' predicted
distributions after each prefix, so no target token is needed (the attention mask alone selects the
positions). The base distribution is the same PEFT model with its adapter disabled (no second copy
of the weights), run without gradients and in eval mode (no dropout: the reference is the base
model itself); the tuned pass runs in the trainer's mode. Both in float32.

General text: the first `kl.samples` records of `<data_dir>/general_text/train.jsonl` (as phase 1
reads the first `importance.samples`), tokenised once (at most `kl.max_length` tokens, no special
tokens), in batches of `kl.batch_size`, one batch per call of the hook, in an order drawn from the
run's seed (a fresh permutation of the records each pass). A run resumed from a checkpoint starts
that order again from its beginning.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.examples import DataError, encode_texts, read_records
from ..core.layout import GENERAL_TEXT

if TYPE_CHECKING:
    from .hooks import HookContext


def token_kl(base_logits, tuned_logits, mask):
    """KL(p_base || p_tuned) of each position's next-token distribution, averaged over the positions
    where `mask` is 1; in float32 whatever the logits' dtype."""
    log_p = base_logits.float().log_softmax(-1)
    log_q = tuned_logits.float().log_softmax(-1)
    per_position = (log_p.exp() * (log_p - log_q)).sum(-1)
    mask = mask.to(per_position.dtype)
    return (per_position * mask).sum() / mask.sum().clamp_min(1.0)


def general_features(data_dir: str | Path, tok, samples: int, max_length: int) -> list[list[int]]:
    """Token ids of the first `samples` general-text records, truncated to `max_length`."""
    rows = read_records(Path(data_dir) / GENERAL_TEXT / "train.jsonl", "text")[:samples]
    return [ids for ids in encode_texts((r["text"] for r in rows), tok, max_length) if ids]


def general_batches(features: list[list[int]], batch_size: int, seed: int) -> Iterator[list[list[int]]]:
    """Endless batches of `features`: each pass a fresh permutation drawn from `seed`."""
    if not features:
        raise DataError("kl_lora: the general text holds no tokens")
    rng = random.Random(seed)
    while True:
        order = list(range(len(features)))
        rng.shuffle(order)
        for i in range(0, len(order), batch_size):
            yield [features[j] for j in order[i : i + batch_size]]


def pad_batch(batch: list[list[int]], pad_id: int, device):
    """(input_ids, attention_mask), right-padded."""
    import torch

    width = max(map(len, batch))
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, row in enumerate(batch):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids.to(device), mask.to(device)


def kl_to_base(model, input_ids, attention_mask):
    """KL(base || tuned) of a PEFT model on one batch (see the module docstring)."""
    import torch

    training = model.training
    try:
        model.eval()
        with torch.no_grad(), model.disable_adapter():
            base = model(input_ids=input_ids, attention_mask=attention_mask).logits
    finally:
        model.train(training)
    tuned = model(input_ids=input_ids, attention_mask=attention_mask).logits
    return token_kl(base, tuned, attention_mask)


def kl_hook(ctx: HookContext):
    """The loss-hook factory of `kl_lora`: hook(model, inputs, outputs) -> kl.weight * KL on the next
    general batch. The domain batch (`inputs`, `outputs`) is not read; the passes run on `ctx.model`
    (the PEFT model, also inside a DDP wrapper)."""
    kl_cfg = ctx.cfg["kl"]
    model = ctx.model
    if not hasattr(model, "disable_adapter"):
        raise ValueError("kl_lora needs a PEFT adapter (its base distribution is the model with the adapter disabled)")
    features = general_features(ctx.data_dir, ctx.tok, kl_cfg["samples"], kl_cfg["max_length"])
    batches = general_batches(features, kl_cfg["batch_size"], ctx.seed)
    pad_id = next((t for t in (ctx.tok.pad_token_id, ctx.tok.eos_token_id) if t is not None), 0)  # masked out
    weight = float(kl_cfg["weight"])

    def hook(_model, inputs, outputs):
        ids, mask = pad_batch(next(batches), pad_id, inputs["input_ids"].device)
        return weight * kl_to_base(model, ids, mask)

    return hook

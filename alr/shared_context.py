"""Multiple-choice scoring that runs each context once: lm-eval's HFLM with its token-level scorer replaced.

lm-eval scores every (context, continuation) request as one full sequence, so a five-shot question with
four choices runs its long context four times, and it computes the output head and softmax at every
position although only the continuation's are read. Here the requests that share a context run it once
(the head on its last position only), keep its key/value cache, and score all of its continuations from
that cache; contexts are batched longest first, `batch_size` continuations per batch. Tokenisation
(lm-eval's `_encode_pair`), tasks, metrics and aggregation stay lm-eval's; a request longer than the model's
window goes to lm-eval's own scorer, which truncates it.

`tests/test_shared_context.py` checks the log-likelihoods (to 1e-4 nats) and greedy flags against HFLM's
own, and the `lm_eval` command-line test that the accuracies are equal. The speed-up is measured by
`benchmarks/shared_context.py` (benchmarks/README.md).
"""

from __future__ import annotations

Request = tuple[tuple[str, str], list[int], list[int]]


def _batches(groups: list[tuple[list[int], list[int]]], batch_size: int) -> list[list[int]]:
    """Group indices, longest context first, in batches of at most `batch_size` requests (lm-eval's
    meaning of the batch size: sequences per forward pass), each group whole."""
    order = sorted(range(len(groups)), key=lambda g: -len(groups[g][0]))
    batches, current, size = [], [], 0
    for g in order:
        if current and size + len(groups[g][1]) > batch_size:
            batches.append(current)
            current, size = [], 0
        current.append(g)
        size += len(groups[g][1])
    return batches + ([current] if current else [])


def _score_batch(model, pad_id: int, groups: list[tuple[list[int], list[list[int]]]]) -> list[tuple[float, bool]]:
    """(log-likelihood, greedy) of every continuation of `groups` [(context, continuations)], in order:
    the contexts run once, left-padded (positions counted from each context's first token, as in a
    pass of its own), with the head on their last position; the continuations then run from a copy
    of their context's cache, right-padded."""
    import torch

    dev = next(model.parameters()).device
    width = max(len(ctx) for ctx, _ in groups)
    ids = torch.full((len(groups), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, (ctx, _) in enumerate(groups):
        ids[b, width - len(ctx) :] = torch.tensor(ctx)
        mask[b, width - len(ctx) :] = 1
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    out = model(
        input_ids=ids.to(dev),
        attention_mask=mask.to(dev),
        position_ids=positions.to(dev),
        use_cache=True,
        logits_to_keep=1,
    )
    first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
    rows = [b for b, (_, conts) in enumerate(groups) for _ in conts]
    conts = [c for _, cs in groups for c in cs]
    scores = [(float(first[b, c[0]]), int(first[b].argmax()) == c[0]) for b, c in zip(rows, conts)]
    rest = max(len(c) for c in conts) - 1
    if rest == 0:
        return scores
    cache = out.cache
    cache.batch_select_indices(torch.tensor(rows, device=dev))
    inputs = torch.full((len(conts), rest), pad_id, dtype=torch.long)
    cont_mask = torch.zeros_like(inputs)
    for row, c in enumerate(conts):
        inputs[row, : len(c) - 1] = torch.tensor(c[:-1])
        cont_mask[row, : len(c) - 1] = 1
    starts = torch.tensor([len(groups[b][0]) for b in rows])
    logits = model(
        input_ids=inputs.to(dev),
        attention_mask=torch.cat([mask[rows], cont_mask], dim=1).to(dev),
        position_ids=(starts[:, None] + torch.arange(rest)).to(dev),
        cache=cache,
    ).logits
    logp = torch.log_softmax(logits.float(), dim=-1)
    for row, c in enumerate(conts):
        target = torch.tensor(c[1:], device=dev)
        tail = logp[row, : len(c) - 1]
        ll, greedy = scores[row]
        scores[row] = (
            ll + float(tail.gather(-1, target[:, None]).sum()),
            greedy and bool((tail.argmax(-1) == target).all()),
        )
    return scores


def shared_context_lm(**hflm_kwargs):
    """An lm-eval HFLM (built from `hflm_kwargs`) whose log-likelihood requests share their contexts'
    computation."""
    import torch
    from lm_eval.models.huggingface import HFLM

    class SharedContextLM(HFLM):
        def _loglikelihood_tokens(self, requests: list[Request], disable_tqdm=False, override_bs=None):
            results: list = [None] * len(requests)
            groups: dict[tuple[int, ...], list[int]] = {}
            fallback = []
            for i, (_, context, continuation) in enumerate(requests):
                if not continuation or len(context) + len(continuation) > self.max_length + 1:
                    fallback.append(i)
                else:
                    groups.setdefault(tuple(context), []).append(i)
            keys = list(groups)
            grouped = [(list(k), [requests[i][2] for i in groups[k]]) for k in keys]
            with torch.no_grad():
                for batch in _batches(grouped, self.batch_size):
                    scored = iter(_score_batch(self.model, self.tokenizer.pad_token_id, [grouped[g] for g in batch]))
                    for g in batch:
                        for i in groups[keys[g]]:
                            results[i] = next(scored)
            if fallback:
                for i, s in zip(fallback, super()._loglikelihood_tokens([requests[i] for i in fallback], disable_tqdm)):
                    results[i] = s
            return results

    return SharedContextLM(**hflm_kwargs)

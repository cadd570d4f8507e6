"""Multiple-choice scoring that runs each context once: lm-eval's HFLM with its token-level scorer replaced.

lm-eval scores every (context, continuation) request as one full sequence, so a five-shot question with
four choices runs its long context four times, and it computes the output head and softmax at every
position although only the continuation's are read. Here the requests that share a context run it once
(the head on its last position only), keep its key/value cache, and score all of its continuations from
that cache as one batch. Tokenisation (lm-eval's `_encode_pair`), tasks, metrics and aggregation stay
lm-eval's; a request longer than the model's window goes to lm-eval's own scorer, which truncates it.

`tests/test_shared_context.py` checks the log-likelihoods (to 1e-4 nats) and greedy flags against HFLM's
own, and the `lm_eval` command-line test that the accuracies are equal. The speed-up is measured by
`benchmarks/shared_context.py` (benchmarks/README.md).
"""

from __future__ import annotations

Request = tuple[tuple[str, str], list[int], list[int]]


def _score_group(model, pad_id: int, context: list[int], continuations: list[list[int]]) -> list[tuple[float, bool]]:
    """(log-likelihood, greedy) of each continuation after one shared context."""
    import torch

    dev = next(model.parameters()).device
    out = model(input_ids=torch.tensor([context], device=dev), use_cache=True, logits_to_keep=1)
    first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
    scores = [(float(first[c[0]]), int(first.argmax()) == c[0]) for c in continuations]
    width = max(len(c) for c in continuations) - 1
    if width == 0:
        return scores
    cache = out.cache
    cache.batch_repeat_interleave(len(continuations))
    inputs = torch.full((len(continuations), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(continuations), len(context) + width), dtype=torch.long)
    mask[:, : len(context)] = 1
    for row, c in enumerate(continuations):
        inputs[row, : len(c) - 1] = torch.tensor(c[:-1])
        mask[row, len(context) : len(context) + len(c) - 1] = 1
    logits = model(input_ids=inputs.to(dev), attention_mask=mask.to(dev), cache=cache).logits
    logp = torch.log_softmax(logits.float(), dim=-1)
    for row, c in enumerate(continuations):
        target = torch.tensor(c[1:], device=dev)
        rows = logp[row, : len(c) - 1]
        ll, greedy = scores[row]
        scores[row] = (
            ll + float(rows.gather(-1, target[:, None]).sum()),
            greedy and bool((rows.argmax(-1) == target).all()),
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
            with torch.no_grad():
                for context, members in groups.items():
                    scored = _score_group(
                        self.model, self.tokenizer.pad_token_id, list(context), [requests[i][2] for i in members]
                    )
                    for i, s in zip(members, scored):
                        results[i] = s
            if fallback:
                for i, s in zip(fallback, super()._loglikelihood_tokens([requests[i] for i in fallback], disable_tqdm)):
                    results[i] = s
            return results

    return SharedContextLM(**hflm_kwargs)

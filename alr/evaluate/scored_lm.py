"""lm-eval's HFLM with the output head only where lm-eval reads it.

A log-likelihood request reads the model's next-token distribution at its continuation's positions
only, yet HFLM projects every position of the padded batch onto the vocabulary (49,152 entries for
SmolLM2) and takes the log-softmax of all of them, a third of a forward pass at 128 tokens
(benchmarks/studies/head_share.py). Here a batch's forward pass keeps the logits of its
last K positions only (transformers' `logits_to_keep`), K the fewest that still hold every row's
continuation. HFLM locates a row's continuation from the end of what `_model_call` returns (its
`ctx_len` allows for logits shorter than the padded input), so batches, padding, scores and samples
are HFLM's own; the head's products are the same products on fewer rows.

A row's K comes from the requests themselves: `_loglikelihood_tokens` first notes, for every input
(context and continuation, as HFLM truncates and shifts them), the first position any of its
continuations is read from. A row HFLM pads on the right is matched to its input with its trailing
zeros (HFLM's padding) removed, and where several inputs match, the earliest position counts, so K
never falls short. A row that matches none, or a model whose forward has no `logits_to_keep`, gets
every position, as HFLM gives.
"""

from __future__ import annotations

import torch
from lm_eval.models.huggingface import HFLM

from ..model.load import accepts_logits_to_keep


def _stripped(tokens) -> tuple[int, ...]:
    """A token sequence without its trailing zeros: a right-padded row and its unpadded input agree."""
    tokens = list(tokens)
    while tokens and tokens[-1] == 0:
        tokens.pop()
    return tuple(tokens)


def first_read_positions(requests, max_length: int) -> dict[tuple[int, ...], int]:
    """{input without trailing zeros: the first position whose logits any of its requests reads}, for
    HFLM's causal requests (key, context tokens, continuation tokens)."""
    first: dict[tuple[int, ...], int] = {}
    for _, context, continuation in requests:
        inp = (context + continuation)[-(max_length + 1) :][:-1]
        start = len(inp) - len(continuation)
        key = _stripped(inp)
        first[key] = min(start, first.get(key, start))
    return first


class ContinuationHeadLM(HFLM):
    """HFLM whose log-likelihood passes project only the positions the requests read (module docstring)."""

    _first_read: dict[tuple[int, ...], int] | None = None

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs: int | None = None):
        keeps = self.backend == "causal" and accepts_logits_to_keep(self.model)
        self._first_read = first_read_positions(requests, self.max_length) if keeps else None
        try:
            return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
        finally:
            self._first_read = None

    def positions_to_keep(self, inps: torch.Tensor) -> int:
        """The fewest last positions of the batch that hold every row's read positions."""
        width = inps.shape[1]
        starts = [self._first_read.get(_stripped(row.tolist()), 0) for row in inps]
        return width - min(starts)

    def _model_call(self, inps: torch.Tensor, attn_mask=None, labels=None) -> torch.Tensor:
        if self._first_read is None or attn_mask is not None:
            return super()._model_call(inps, attn_mask=attn_mask, labels=labels)
        with torch.no_grad():  # no autocast: alr gives HFLM no mixed-precision dtype
            return self.model(inps, logits_to_keep=self.positions_to_keep(inps)).logits

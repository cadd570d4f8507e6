"""ContinuationHeadLM scores every log-likelihood request as lm-eval's HFLM does, while projecting
fewer positions onto the vocabulary: batches mixing lengths, shared contexts, left truncation, and
inputs that end in token 0 (HFLM's padding id)."""

import random

import pytest

BOUND = 1e-5  # nats: the same products on fewer rows


@pytest.fixture(scope="module")
def model_tok(tiny_model):
    from alr.model.load import load_tuned

    return load_tuned(tiny_model, None)


def _requests(vocab: int) -> list[tuple]:
    """HFLM's causal requests ((context, continuation) strings, context ids, continuation ids)."""
    rng = random.Random(0)

    def ids(n):
        return [rng.randrange(3, vocab) for _ in range(n)]

    shared = ids(7)
    pairs = [(shared, ids(k)) for k in (1, 1, 3, 5)]  # one context, several continuations
    pairs += [(ids(rng.randrange(1, 12)), ids(rng.randrange(1, 6))) for _ in range(14)]
    pairs += [(ids(20), ids(4)), (ids(3), ids(16))]  # truncated from the left at max_length 16
    pairs += [(ids(5) + [0], [7]), (ids(4), [0, 0, 9]), (ids(6), [0])]  # inputs ending in the padding id
    return [((str(c), str(k)), c, k) for c, k in pairs]


def _scorers(model_tok):
    from lm_eval.models.huggingface import HFLM

    from alr.evaluate.scored_lm import ContinuationHeadLM

    model, tok = model_tok
    common = dict(pretrained=model, tokenizer=tok, batch_size=4, max_length=16, device="cpu")
    return HFLM(**common), ContinuationHeadLM(**common)


def test_log_likelihoods_equal_hflms_with_fewer_positions(model_tok, monkeypatch):
    from alr.evaluate.scored_lm import ContinuationHeadLM

    plain, ours = _scorers(model_tok)
    requests = _requests(model_tok[0].config.vocab_size)
    kept, keep = [], ContinuationHeadLM.positions_to_keep

    def spy(self, inps):
        kept.append((keep(self, inps), inps.shape[1]))
        return kept[-1][0]

    monkeypatch.setattr(ContinuationHeadLM, "positions_to_keep", spy)
    theirs = plain._loglikelihood_tokens(requests, disable_tqdm=True)
    got = ours._loglikelihood_tokens(requests, disable_tqdm=True)
    assert [g for _, g in got] == [g for _, g in theirs]
    assert max(abs(a - b) for (a, _), (b, _) in zip(got, theirs)) <= BOUND
    assert kept and sum(k for k, _ in kept) < sum(w for _, w in kept)  # the head ran on fewer positions
    assert ours._first_read is None  # nothing carried to the next call


def test_a_row_that_matches_no_request_keeps_every_position(model_tok):
    import torch

    _, ours = _scorers(model_tok)
    ours._first_read = {(5, 6, 7): 2}
    assert ours.positions_to_keep(torch.tensor([[5, 6, 7, 8, 0, 0]])) == 6
    assert ours.positions_to_keep(torch.tensor([[5, 6, 7, 0, 0, 0], [5, 6, 7, 0, 0, 0]])) == 4

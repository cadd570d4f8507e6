"""The shared-context scorer gives lm-eval's own log-likelihoods and greedy flags: contexts shared by
several choices, one-token and multi-token continuations, an empty context, and requests longer than
the window (lm-eval's scorer)."""

import pytest

CONTEXTS = [
    "Question: which animal has four legs and says moo?\nAnswer:",
    "Question: paris is the capital of which country? Think of the map of europe.\nAnswer: ",
    "",
]
CHOICES = [" the cow", " a horse that runs very fast across the field", " cat", "france"]


@pytest.fixture(scope="module")
def model_tok(tiny_model):
    from alr.models import load_tuned

    return load_tuned(tiny_model, None)


def _requests():
    from lm_eval.api.instance import Instance

    pairs = [(c, a) for c in CONTEXTS for a in CHOICES] + [("The end", ".")]
    return [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]


@pytest.mark.parametrize(("max_length", "batch_size"), [(2048, 4), (2048, 16), (40, 16)])
def test_shared_context_scores_equal_lm_evals(model_tok, max_length, batch_size):
    """Batch size 4 holds one context's four choices; 16 holds contexts of different lengths (left-padded)."""
    from lm_eval.models.huggingface import HFLM

    from alr.shared_context import shared_context_lm

    model, tok = model_tok
    theirs = HFLM(pretrained=model, tokenizer=tok, batch_size=batch_size, device="cpu", max_length=max_length)
    ours = shared_context_lm(
        pretrained=model, tokenizer=tok, batch_size=batch_size, device="cpu", max_length=max_length
    )
    expected = theirs.loglikelihood(_requests(), disable_tqdm=True)
    got = ours.loglikelihood(_requests(), disable_tqdm=True)
    assert [g for _, g in got] == [g for _, g in expected]
    assert [ll for ll, _ in got] == pytest.approx([ll for ll, _ in expected], abs=1e-4)

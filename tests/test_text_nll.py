"""The general-text NLL scores a text as lm-eval's loglikelihood_rolling does: every token once, the
first from the prefix token, in lm-eval's rolling windows; batching and padding change nothing."""

import pytest

from alr.evaluate.text_nll import prefix_token_id, text_nll, text_token_ids, text_windows

TEXTS = ["Question: which horse has four legs?\nAnswer: the horse", "a b c", "paris is in france " * 12]


@pytest.fixture(scope="module")
def model_tok(tiny_model):
    from alr.model.load import load_tuned

    return load_tuned(tiny_model, None)


def test_a_text_within_one_window_is_the_models_loss_after_the_prefix(model_tok):
    import torch

    model, tok = model_tok
    got = text_nll(model, tok, TEXTS[:2], max_length=40, max_tokens=64)
    with torch.no_grad():
        for text, scored in zip(TEXTS[:2], got):  # one text alone, no padding: the model's own loss
            ids = torch.tensor([[prefix_token_id(tok), *text_token_ids(tok, text)]])
            assert scored["tokens"] == ids.shape[1] - 1
            assert scored["nll"] == pytest.approx(model(input_ids=ids, labels=ids).loss.item(), rel=1e-5)


def test_every_token_is_predicted_once_within_the_window(model_tok):
    _, tok = model_tok
    ids = text_token_ids(tok, TEXTS[2])
    windows = text_windows(tok, TEXTS[2], max_length=16)
    assert len(windows) > 2 and [t for _, predicted in windows for t in predicted] == ids
    assert all(len(inp) <= 16 and inp[len(inp) - len(predicted) + 1 :] == predicted[:-1] for inp, predicted in windows)
    assert windows[0][0][0] == prefix_token_id(tok)


def test_rolling_windows_equal_lm_evals_own(model_tok):
    """lm-eval's HFLM.loglikelihood_rolling on the same model, window and texts (several windows each)."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    model, tok = model_tok
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=1, max_length=16, add_bos_token=False, device="cpu")
    requests = [Instance("loglikelihood_rolling", {}, (t,), i) for i, t in enumerate(TEXTS)]
    theirs = lm.loglikelihood_rolling(requests, disable_tqdm=True)
    ours = text_nll(model, tok, TEXTS, max_length=16, max_tokens=48)
    for ll, scored in zip(theirs, ours):
        assert scored["nll"] * scored["tokens"] == pytest.approx(-ll, rel=1e-6)

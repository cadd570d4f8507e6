"""A tokenizer that puts a BOS before every text (as Llama-3's does) gets it in training and in the KL
term, as lm-eval gets it when it encodes a context, and once as the text NLL's prefix (never scored);
one that does not (SmolLM2's, the tiny model's) gets nothing added."""

import copy

import pytest
from tokenizers import processors
from transformers import AutoTokenizer

from alr.core.examples import encode_texts, leading_special_ids, tokenize_pairs, tokenize_texts
from alr.evaluate.text_nll import text_windows


@pytest.fixture(scope="module")
def tokenizers(tiny_model):
    plain = AutoTokenizer.from_pretrained(tiny_model)
    bos = copy.deepcopy(plain)
    bos._tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", plain.bos_token_id)]
    )
    return plain, bos


def test_only_a_tokenizer_that_adds_bos_gets_one(tokenizers):
    plain, bos = tokenizers
    assert leading_special_ids(plain) == [] and leading_special_ids(bos) == [bos.bos_token_id]
    assert encode_texts(["alpha beta"], plain, 64)[0] == plain("alpha beta")["input_ids"]


def test_training_nll_and_lm_eval_treat_the_first_token_alike(tokenizers, tiny_model):
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM

    _, bos = tokenizers
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    lm = HFLM(pretrained=model, tokenizer=bos, batch_size=1, device="cpu")
    context = "Question: which goes with alpha? Answer:"
    assert lm.tok_encode(context)[0] == bos.bos_token_id  # lm-eval: the tokenizer's default, so a BOS
    (pair,) = tokenize_pairs([(context, " beta")], bos, 64)
    assert pair["input_ids"][0] == bos.bos_token_id and pair["input_ids"][1:].count(bos.bos_token_id) == 0
    assert pair["input_ids"][: len(lm.tok_encode(context))] == lm.tok_encode(context)  # the same context ids
    (text,) = tokenize_texts(["alpha beta gamma"], bos, 64)
    assert text["input_ids"][0] == bos.bos_token_id
    assert encode_texts(["alpha beta gamma"], bos, 3)[0][0] == bos.bos_token_id  # kept when truncating
    ((inp, predicted),) = text_windows(bos, "alpha beta gamma", 64)  # the NLL: the BOS once, as context only
    assert inp[0] == bos.bos_token_id and bos.bos_token_id not in inp[1:] + predicted
    assert predicted == bos("alpha beta gamma", add_special_tokens=False)["input_ids"]


def test_truncation_keeps_the_bos_and_the_answer(tokenizers):
    _, bos = tokenizers
    (pair,) = tokenize_pairs([("alpha " * 40, " beta")], bos, 8)
    assert len(pair["input_ids"]) == 8 and pair["input_ids"][0] == bos.bos_token_id
    assert pair["input_ids"][-1] == bos.eos_token_id and pair["labels"][:-2] == [-100] * 6

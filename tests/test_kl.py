"""kl_lora: LoRA + kl.weight x KL(base || tuned) of next-token distributions on general-text batches."""

import copy

import pytest
import torch
import torch.nn.functional as F

import alr.methods.kl as kl_mod
from alr.finetune.run import finetune
from alr.methods.kl import general_features, kl_to_base, pad_batch, token_kl
from alr.methods.runs import resolve_run
from alr.model.load import load_base, wrap_lora


def _reference_kl(base_logits, tuned_logits, mask):
    """The formula, written with torch's kl_div: sum_v p (log p - log q), mean over unmasked positions."""
    per_position = F.kl_div(
        tuned_logits.float().log_softmax(-1), base_logits.float().log_softmax(-1), log_target=True, reduction="none"
    ).sum(-1)
    return per_position[mask.bool()].mean()


@pytest.fixture
def kl_cfg(tiny_cfg):
    cfg = copy.deepcopy(tiny_cfg)
    cfg["train"].update(batch_size=2, grad_accum=1, max_steps=3, checkpoint_steps=0)
    cfg["kl"].update(weight=1.0, samples=6, batch_size=3, max_length=24)
    return cfg


@pytest.fixture
def spied(monkeypatch):
    """Every general batch kl_lora's hook scores: (input_ids, attention_mask, KL)."""
    seen = []
    real = kl_mod.kl_to_base

    def spy(model, ids, mask):
        value = real(model, ids, mask)
        seen.append((ids.clone(), mask.clone(), float(value.detach())))
        return value

    monkeypatch.setattr(kl_mod, "kl_to_base", spy)
    return seen


def _general_kl(model_dir, data_dir, adapter, cfg) -> float:
    """Mean token KL(base || tuned) of a saved adapter over the configured general texts (eval mode)."""
    from peft import PeftModel

    model, tok = load_base(model_dir, "float32")
    model = PeftModel.from_pretrained(model, adapter).eval()
    feats = general_features(data_dir, tok, cfg["kl"]["samples"], cfg["kl"]["max_length"])
    ids, mask = pad_batch(feats, tok.pad_token_id, "cpu")
    with torch.no_grad():
        return float(kl_to_base(model, ids, mask))


def test_token_kl_matches_torch_kl_div():
    torch.manual_seed(0)
    base, tuned = torch.randn(3, 5, 11), torch.randn(3, 5, 11)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    ours = token_kl(base, tuned, mask)
    assert torch.allclose(ours, _reference_kl(base, tuned, mask), atol=1e-6)
    assert ours > 0 and token_kl(base, base, mask) == 0
    # padding positions do not count, whatever their logits
    noisy = tuned.clone()
    noisy[mask == 0] += 100.0
    assert torch.allclose(token_kl(base, noisy, mask), ours, atol=1e-6)
    assert token_kl(base.half(), tuned.half(), mask).dtype == torch.float32


def test_kl_to_base_matches_the_reference_on_a_tuned_adapter(tiny_model, tiny_data, kl_cfg):
    """The adapter-disabled pass is the base model: the KL equals kl_div on the base model's logits
    (a separate pass) and the adapted model's logits."""
    torch.manual_seed(0)
    model, tok = load_base(tiny_model, "float32")
    model = wrap_lora(model, kl_cfg["lora"])
    with torch.no_grad():  # move the adapter away from the base (B starts at zero)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    model.eval()
    feats = [f[: 8 + 5 * i] for i, f in enumerate(general_features(tiny_data, tok, 4, 24))]
    ids, mask = pad_batch(feats, tok.pad_token_id, "cpu")
    assert (mask == 0).any()  # records of different lengths: padding is exercised
    with torch.no_grad():
        ours = kl_to_base(model, ids, mask)
        tuned = model(input_ids=ids, attention_mask=mask).logits
        base_model, _ = load_base(tiny_model, "float32")
        base = base_model.eval()(input_ids=ids, attention_mask=mask).logits
    assert ours > 0
    assert torch.allclose(ours, _reference_kl(base, tuned, mask), rtol=1e-5, atol=1e-7)


def test_kl_is_zero_at_the_first_step_then_positive(tiny_model, tiny_data, kl_cfg, spied, tmp_path):
    """B is zero-initialised, so the first step's tuned model is the base: KL exactly 0; once the
    adapter has moved it is positive. One general batch per micro-batch (3 steps, no accumulation)."""
    rec = finetune(resolve_run(kl_cfg, "kl_lora"), tiny_model, tiny_data, "science", 0, tmp_path / "kl")
    values = [v for _, _, v in spied]
    assert rec["steps"] == 3 and len(values) == 3
    assert values[0] == 0.0 and values[-1] > 0
    assert rec["final_hook"] == pytest.approx(values[-1])  # weight 1, one general batch per logged step
    assert rec["config"]["kl"] == kl_cfg["kl"]
    assert _general_kl(tiny_model, tiny_data, tmp_path / "kl" / "model", kl_cfg) > 0


def test_the_hook_scores_general_text_batches_not_the_domain_batch(tiny_model, tiny_data, kl_cfg, spied, tmp_path):
    """Each call scores kl.batch_size of the first kl.samples general-text records (tokenised without
    special tokens, truncated to kl.max_length), a permutation of them per pass, in an order fixed by
    the seed."""
    kl_cfg["train"]["max_steps"] = 4  # 2 passes over the 6 records in batches of 3
    finetune(resolve_run(kl_cfg, "kl_lora"), tiny_model, tiny_data, "science", 0, tmp_path / "a")
    _, tok = load_base(tiny_model, "float32")
    general = [tuple(f) for f in general_features(tiny_data, tok, 6, 24)]
    assert len(general) == 6 and max(map(len, general)) <= 24
    domain_ids = {tuple(r["input_ids"]) for r in _domain_features(tiny_data, tok, kl_cfg)}
    rows = [tuple(ids[i][mask[i].bool()].tolist()) for ids, mask, _ in spied for i in range(len(ids))]
    assert [len(ids) for ids, _, _ in spied] == [3] * 4
    assert sorted(rows[:6]) == sorted(general) and sorted(rows[6:]) == sorted(general)  # each pass: every record once
    assert not set(rows) & domain_ids
    first = rows
    spied.clear()
    finetune(resolve_run(kl_cfg, "kl_lora"), tiny_model, tiny_data, "science", 0, tmp_path / "b")
    assert [tuple(ids[i][mask[i].bool()].tolist()) for ids, mask, _ in spied for i in range(len(ids))] == first
    spied.clear()
    finetune(resolve_run(kl_cfg, "kl_lora"), tiny_model, tiny_data, "science", 1, tmp_path / "c")
    assert [tuple(ids[i][mask[i].bool()].tolist()) for ids, mask, _ in spied for i in range(len(ids))] != first


def _domain_features(data_dir, tok, cfg):
    from alr.core.examples import mc_to_pair, read_records, tokenize_pairs

    rows = read_records(data_dir / "science" / "train.jsonl", "mc")
    return tokenize_pairs((mc_to_pair(r) for r in rows), tok, cfg["train"]["max_length"], cfg["train"]["loss_on"])


def test_a_large_kl_weight_stays_closer_to_base_on_general_text_than_lora(tiny_model, tiny_data, kl_cfg, tmp_path):
    cfg = copy.deepcopy(kl_cfg)
    cfg["train"]["max_steps"] = 6
    cfg["kl"]["weight"] = 50.0
    finetune(resolve_run(cfg, "lora"), tiny_model, tiny_data, "science", 0, tmp_path / "lora")
    finetune(resolve_run(cfg, "kl_lora"), tiny_model, tiny_data, "science", 0, tmp_path / "kl")
    lora = _general_kl(tiny_model, tiny_data, tmp_path / "lora" / "model", cfg)
    kl = _general_kl(tiny_model, tiny_data, tmp_path / "kl" / "model", cfg)
    assert 0 < kl < 0.5 * lora, (kl, lora)


def test_kl_weight_is_swept_and_each_run_trains_with_its_own(tiny_model, tiny_data, kl_cfg, tmp_path):
    from alr.methods.runs import all_runs

    cfg = copy.deepcopy(kl_cfg)
    cfg["methods"] = ["lora", "kl_lora"]
    cfg["kl"]["weight"] = [0.5, 2]
    assert all_runs(cfg) == ["lora", "kl_lora-w0.5", "kl_lora-w2"]
    cfg["train"]["max_steps"] = 1
    rec = finetune(resolve_run(cfg, "kl_lora-w2"), tiny_model, tiny_data, "science", 0, tmp_path / "kl")
    assert rec["run"] == "kl_lora-w2" and rec["config"]["kl"]["weight"] == 2.0


def test_kl_lora_refuses_missing_general_text_before_loading(tiny_model, tiny_data, kl_cfg, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    (data / "general_text" / "train.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match="general_text/train.jsonl"):
        finetune(resolve_run(kl_cfg, "kl_lora"), tiny_model, data, "science", 0, tmp_path / "kl")

"""Phase 1 and phase 2 on the tiny model: the importance file, gradient accumulation, and the effect
of the penalty."""

import copy
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
import yaml
from safetensors.torch import load_file

from alr.core.io import read_json
from alr.finetune.run import finetune
from alr.importance.store import ImportanceMismatchError, load_importance
from alr.methods.runs import resolve_run
from tests.tiny import record


class Env(NamedTuple):
    model: Path
    data: Path
    cfg: dict
    imp: Path


@pytest.fixture(scope="module")
def env(tiny_config_file, tiny_model, tiny_data, tmp_path_factory):
    """The session's tiny model and data, and an importance file recorded once for this module
    (read-only for tests: copy cfg before changing it)."""
    cfg = yaml.safe_load(tiny_config_file.read_text())
    cfg["lora"]["dropout"] = 0.0  # deterministic updates for the comparisons below
    cfg["importance"].update(samples=12, max_steps=6)
    imp = tmp_path_factory.mktemp("train") / "importance" / "si.safetensors"
    record("si", cfg, tiny_model, tiny_data, imp)
    return Env(tiny_model, tiny_data, cfg, imp)


@pytest.fixture(scope="module")
def fisher_file(env, tmp_path_factory):
    """EWC-LoRA's full-model Fisher on 5 general texts of at most 24 tokens (read-only for tests)."""
    c = copy.deepcopy(env.cfg)
    c["fisher"].update(samples=5, max_length=24)
    path = tmp_path_factory.mktemp("fisher") / "fisher.safetensors"
    record("fisher", c, env.model, env.data, path)
    return path


def _delta(run_dir):
    """{module: B @ A} of the adapter in run_dir/model (or run_dir/si_adapter)."""
    folder = run_dir / "model" if (run_dir / "model").exists() else run_dir / "si_adapter"
    w = load_file(str(folder / "adapter_model.safetensors"))
    deltas = {}
    for name, a in w.items():
        if "lora_A" in name:
            b = w[name.replace("lora_A", "lora_B")]
            key = name.split("base_model.model.")[-1].replace(".lora_A.weight", "")
            deltas[key] = b @ a
    return deltas


def test_importance_file_is_finite_nonnegative_and_shaped_like_weights(env):
    imp = env.imp
    tensors = load_file(str(imp))
    sidecar = read_json(imp.with_suffix(".json"))
    from transformers import AutoModelForCausalLM

    weights = dict(AutoModelForCausalLM.from_pretrained(env.model).named_parameters())
    assert len(tensors) == 2 * 2  # q_proj and v_proj in each of the 2 layers
    for name, t in tensors.items():
        assert name.endswith(("q_proj", "v_proj"))
        assert tuple(t.shape) == tuple(weights[name + ".weight"].shape)
        assert torch.isfinite(t).all() and (t >= 0).all()
    assert any(t.sum() > 0 for t in tensors.values())
    for key in (
        "estimator",
        "model",
        "targets",
        "n_samples",
        "n_tokens",
        "steps",
        "wall_time_s",
        "peak_mem_mb",
        "bytes",
        "dtype",
        "config",
    ):
        assert key in sidecar, key
    assert sidecar["steps"] == 6 and sidecar["bytes"] == imp.stat().st_size


def test_importance_mismatch_is_refused(env):
    imp = env.imp
    tensors = load_file(str(imp))
    shapes = {n: tuple(t.shape) for n, t in tensors.items()}
    with pytest.raises(ImportanceMismatchError, match="computed for model"):
        load_importance(imp, shapes, fingerprint="0" * 64)
    wrong = dict(shapes)
    wrong[next(iter(wrong))] = (1, 1)
    with pytest.raises(ImportanceMismatchError, match="shape"):
        load_importance(imp, wrong)
    with pytest.raises(ImportanceMismatchError, match="missing"):
        load_importance(imp, {**shapes, "model.layers.9.self_attn.k_proj": (4, 4)})


def test_gradient_accumulation_matches_one_big_batch(env, tmp_path):
    """2 micro-batches of 2 accumulated == 1 batch of 4, with the penalty active (second step)."""
    runs = {}
    for name, (bs, ga) in {"big": (4, 1), "accum": (2, 2)}.items():
        c = copy.deepcopy(env.cfg)
        c["train"].update(batch_size=bs, grad_accum=ga, max_steps=3, lr=1e-2)
        c["regularize"]["lambda"] = 50.0
        finetune(resolve_run(c, "alr"), env.model, env.data, "science", 0, tmp_path / name, env.imp)
        runs[name] = _delta(tmp_path / name)
        assert read_json(tmp_path / name / "train.json")["final_reg"] > 0
    for key, big in runs["big"].items():
        err = (runs["accum"][key] - big).norm() / big.norm()
        assert err < 1e-4, (key, float(err))


@pytest.mark.parametrize("init", ["base", "phase1"])
def test_regularised_tuning_moves_important_weights_less(env, tmp_path, init):
    """Same seed, same data: alr moves the top-10% importance weights away from theta* far less than
    lora does (theta* = base weights, or the phase-1 model when phase 2 continues phase 1's adapter)."""
    importance = load_file(str(env.imp))
    phase1 = env.imp.parent / "si_adapter"
    reference = _delta(phase1.parent) if init == "phase1" else None
    moved = {}
    for method in ("lora", "alr"):
        c = copy.deepcopy(env.cfg)
        c["train"].update(max_steps=8, lr=1e-2)
        c["regularize"].update({"lambda": 1e3, "phase2_init": init})
        out = tmp_path / method
        rec = finetune(
            resolve_run(c, method),
            env.model,
            env.data,
            "science",
            0,
            out,
            env.imp if method == "alr" else None,
            phase1 if init == "phase1" else None,
        )
        assert rec["init_adapter"] == (str(phase1) if init == "phase1" else None)
        deltas = _delta(out)
        top = []
        for name, omega in importance.items():
            mask = omega >= omega.flatten().quantile(0.9)
            moved_by = deltas[name] - (reference[name] if reference else 0)
            top.append(moved_by[mask].square().mean())
        moved[method] = float(torch.stack(top).mean())
        if method == "alr":
            coefs = rec["layer_coefficients"]
            assert sum(coefs.values()) == pytest.approx(1.0)
            assert len({round(v, 9) for v in coefs.values()}) > 1, "softmax_norm must not be uniform here"
            assert max(coefs.values()) < 0.99, "softmax_norm must not be one-hot"
            assert set(rec["layer_penalties"]) == set(coefs)
    assert moved["alr"] < 0.5 * moved["lora"], moved


def test_bf16_stored_importance_trains_like_fp32(env, tmp_path):
    """bf16 storage halves the importance file (4.9% of the full-model Fisher for SmolLM2) without a
    measurable change: the same alr run on the fp32 and on the bf16 copy of one importance file."""
    from alr.importance.store import save_importance

    imp = env.imp
    tensors, sidecar = load_importance(imp)
    bf16 = tmp_path / "importance_bf16" / "si.safetensors"
    save_importance(bf16, tensors, sidecar, "bfloat16")
    assert bf16.stat().st_size < 0.55 * imp.stat().st_size
    c = copy.deepcopy(env.cfg)
    c["train"].update(max_steps=8, lr=1e-2)
    c["regularize"]["lambda"] = 1e3  # the penalty dominates, so importance rounding would show
    recs, deltas = {}, {}
    for name, path in (("fp32", imp), ("bf16", bf16)):
        out = tmp_path / name
        recs[name] = finetune(resolve_run(c, "alr"), env.model, env.data, "science", 0, out, path)
        deltas[name] = _delta(out)
    assert recs["bf16"]["final_reg"] == pytest.approx(recs["fp32"]["final_reg"], rel=1e-2)
    for n, d in deltas["fp32"].items():
        assert (deltas["bf16"][n] - d).norm() <= 1e-2 * d.norm(), n


def test_fisher_equals_naive_per_sample_reference(env, fisher_file, tmp_path):
    """Per-sample squared gradients, averaged: against float64 autograd.grad on a copy of the model."""
    from alr.core.examples import read_records, tokenize_texts
    from alr.model.load import load_base

    fisher = load_file(str(fisher_file))
    sidecar = read_json(fisher_file.with_suffix(".json"))
    assert sidecar["per_sample"] is True and sidecar["n_samples"] == 5 and sidecar["scope"] == "full"

    model, tok = load_base(env.model)
    model = model.double().eval()
    params = dict(model.named_parameters())
    assert set(fisher) == set(params)  # full-model-shaped: every parameter
    rows = read_records(env.data / "general_text" / "train.jsonl", "text")[:5]
    reference = {n: torch.zeros_like(p) for n, p in params.items()}
    for feat in tokenize_texts((r["text"] for r in rows), tok, 24):
        ids = torch.tensor([feat["input_ids"]])
        grads = torch.autograd.grad(model(input_ids=ids, labels=ids).loss, list(params.values()), allow_unused=True)
        for (n, _), g in zip(params.items(), grads):
            if g is not None:
                reference[n] += g.square() / 5
    for n, ref in reference.items():
        assert torch.allclose(fisher[n].double(), ref, rtol=1e-3, atol=1e-10), n

    c = copy.deepcopy(env.cfg)
    c["fisher"].update(samples=5, max_length=24)
    record("fisher_adapted", c, env.model, env.data, tmp_path / "fisher.safetensors")
    lean = load_file(str(tmp_path / "fisher.safetensors"))
    assert sorted(lean) == sorted(n for n in fisher if n.endswith(("q_proj.weight", "v_proj.weight")))
    for n, t in lean.items():
        assert torch.equal(t, fisher[n])


def test_ewc_lora_trains_with_the_full_model_fisher(env, fisher_file, tmp_path):
    c = copy.deepcopy(env.cfg)
    c["train"].update(max_steps=3, lr=1e-2)
    rec = finetune(resolve_run(c, "ewc_lora"), env.model, env.data, "science", 0, tmp_path / "ewc", fisher_file)
    assert rec["final_reg"] > 0 and set(rec["layer_coefficients"].values()) == {1.0}
    assert rec["importance"] == str(fisher_file)


def test_wise_ft_interpolates_between_base_and_lora(env, tmp_path):
    from alr.model.load import load_tuned

    c = copy.deepcopy(env.cfg)
    c["train"].update(max_steps=3, lr=1e-2)
    finetune(resolve_run(c, "lora"), env.model, env.data, "science", 0, tmp_path / "wise")
    adapter = tmp_path / "wise" / "model"
    ids = torch.arange(1, 30)[None]
    with torch.no_grad():
        base = load_tuned(env.model, None)[0](ids).logits
        tuned = load_tuned(env.model, adapter)[0](ids).logits
        at0 = load_tuned(env.model, adapter, delta_scale=0.0)[0](ids).logits
        at1 = load_tuned(env.model, adapter, delta_scale=1.0)[0](ids).logits
        half = load_tuned(env.model, adapter, delta_scale=0.5)[0](ids).logits
    assert not torch.allclose(base, tuned, atol=1e-4)
    assert torch.allclose(at0, base, atol=1e-5) and torch.allclose(at1, tuned, atol=1e-5)
    assert not torch.allclose(half, base, atol=1e-4) and not torch.allclose(half, tuned, atol=1e-4)


def test_replay_mix_ratio_holds_over_an_epoch():
    from alr.finetune.run import mix_replay

    domain = [{"id": f"d{i}"} for i in range(90)]
    general = [{"id": f"g{i}"} for i in range(500)]
    rows, info = mix_replay(domain, general, 0.1, seed=0)
    n_general = sum(r["id"].startswith("g") for r in rows)
    assert n_general == info["n_general"] == 10 and n_general / len(rows) == pytest.approx(0.1)
    assert mix_replay(domain, general, 0.1, seed=0)[0] == rows
    with pytest.raises(ValueError, match="general items"):
        mix_replay(domain, general[:3], 0.1, seed=0)


def test_replay_and_full_ft_train(env, tmp_path):
    from transformers import AutoModelForCausalLM

    c = copy.deepcopy(env.cfg)
    c["train"].update(max_steps=2)
    c["baselines"]["full_ft_lr"] = 1e-3
    rec = finetune(resolve_run(c, "replay"), env.model, env.data, "science", 0, tmp_path / "replay")
    assert rec["replay"]["n_general"] == round(rec["replay"]["n_domain"] * 0.1 / 0.9)
    rec = finetune(resolve_run(c, "full_ft"), env.model, env.data, "science", 0, tmp_path / "full")
    assert rec["config"]["train"]["lr"] == 1e-3
    before = dict(AutoModelForCausalLM.from_pretrained(env.model).named_parameters())
    after = dict(AutoModelForCausalLM.from_pretrained(tmp_path / "full" / "model").named_parameters())
    assert before.keys() == after.keys() and rec["trainable_params"] == sum(p.numel() for p in before.values())
    unchanged = [n for n in before if torch.equal(before[n], after[n])]
    assert not unchanged, unchanged


def test_mas_equals_naive_reference(env, tmp_path):
    from alr.core.examples import read_records, tokenize_texts
    from alr.model.load import load_base

    c = copy.deepcopy(env.cfg)
    c["mas"].update(samples=4, max_length=24)
    side = record("mas", c, env.model, env.data, tmp_path / "mas.safetensors")
    assert side["estimator"] == "mas" and side["n_samples"] == 4
    mas = load_file(str(tmp_path / "mas.safetensors"))
    model, tok = load_base(env.model)
    model = model.double().eval()
    rows = read_records(env.data / "general_text" / "train.jsonl", "text")[:4]
    weights = {n: dict(model.named_modules())[n].weight for n in mas}
    reference = {n: torch.zeros_like(w) for n, w in weights.items()}
    for feat in tokenize_texts((r["text"] for r in rows), tok, 24):
        out = model(input_ids=torch.tensor([feat["input_ids"]])).logits
        grads = torch.autograd.grad(out.square().sum(-1).mean(), list(weights.values()))
        for n, g in zip(weights, grads):
            reference[n] += g.abs() / 4
    for n, ref in reference.items():
        assert torch.allclose(mas[n].double(), ref, rtol=1e-3, atol=1e-9), n


def test_alr_full_moves_important_parameters_less_than_full_ft(env, tmp_path):
    c = copy.deepcopy(env.cfg)
    c["baselines"]["full_ft_lr"] = 1e-3
    full_imp = tmp_path / "full_imp" / "si_full.safetensors"
    side = record("si_full", c, env.model, env.data, full_imp)
    importance = load_file(str(full_imp))
    from transformers import AutoModelForCausalLM

    base = dict(AutoModelForCausalLM.from_pretrained(env.model).named_parameters())
    assert side["estimator"] == "si_full" and set(importance) == set(base)
    assert all(torch.isfinite(t).all() and (t >= 0).all() for t in importance.values())
    # AdamW moves every weight by about lr per step whatever the gradient's size, so the penalty shows
    # as direction: regularised weights oscillate around theta*, unregularised ones drift. 40 steps
    # separate the two clearly (20 steps gave a ratio of 0.53).
    c["train"].update(max_steps=40)
    c["regularize"]["lambda"] = 1e4
    moved = {}
    for method in ("full_ft", "alr_full"):
        finetune(
            resolve_run(c, method),
            env.model,
            env.data,
            "science",
            0,
            tmp_path / method,
            full_imp if method == "alr_full" else None,
        )
        tuned = dict(AutoModelForCausalLM.from_pretrained(tmp_path / method / "model").named_parameters())
        top = []
        for name, omega in importance.items():
            if omega.numel() < 10:
                continue
            mask = omega >= omega.flatten().float().quantile(0.9)
            top.append((tuned[name] - base[name]).detach()[mask].square().mean())
        moved[method] = float(torch.stack(top).mean())
    assert moved["alr_full"] < 0.5 * moved["full_ft"], moved


def _batch(vocab: int, loss_on: str):
    """Two examples, the second right-padded; labels on the answers (the last tokens) or on every token."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (2, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    labels = torch.where(mask.bool(), ids, -100)
    if loss_on == "answer":
        labels[0, :6] = -100
        labels[1, :4] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@pytest.mark.parametrize("num_items", [None, 11])
@pytest.mark.parametrize("loss_on, kept", [("answer", 6), ("all", 14)])
def test_scored_positions_only_keeps_the_loss_and_its_gradients(env, num_items, loss_on, kept):
    """The head on the scored positions only gives the model's own loss and LoRA gradients (PEFT model):
    answers 3 + 3 next tokens, every token 8 + 6, of 18 positions."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from alr.model.trainer import scored_positions_only

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(env.model, dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    batch = _batch(base.config.vocab_size, loss_on)
    extra = {} if num_items is None else {"num_items_in_batch": torch.tensor(num_items)}
    results = []
    for inputs in (batch, scored_positions_only(batch)):
        model.zero_grad()
        loss = model(**inputs, **extra).loss
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
        results.append((loss.detach(), grads))
    (full, full_grads), (scored, scored_grads) = results
    assert int(scored_positions_only(batch)["logits_to_keep"].sum()) == kept
    assert torch.allclose(scored, full, rtol=1e-6, atol=0), (float(scored), float(full))
    for a, b in zip(scored_grads, full_grads):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-8)


def test_training_on_scored_positions_only_matches_the_full_head(env, tmp_path, monkeypatch):
    """A fine-tune (penalty on, answers only, accumulated micro-batches) ends at the same adapter with the
    head on every position (the model's own path) as on the scored positions."""
    import alr.model.trainer

    c = copy.deepcopy(env.cfg)
    c["train"].update(batch_size=2, grad_accum=2, max_steps=3, lr=1e-2)
    c["regularize"]["lambda"] = 50.0
    calls = []
    restrict = alr.model.trainer.scored_positions_only
    monkeypatch.setattr(alr.model.trainer, "scored_positions_only", lambda inputs: calls.append(1) or restrict(inputs))
    finetune(resolve_run(c, "alr"), env.model, env.data, "science", 0, tmp_path / "scored", env.imp)
    assert len(calls) >= 3  # at least one micro-batch per optimizer step took the restricted path
    monkeypatch.setattr(alr.model.trainer, "accepts_logits_to_keep", lambda model: False)
    finetune(resolve_run(c, "alr"), env.model, env.data, "science", 0, tmp_path / "full", env.imp)
    scored, full = _delta(tmp_path / "scored"), _delta(tmp_path / "full")
    for key, delta in full.items():
        err = (scored[key] - delta).norm() / delta.norm()
        assert err < 1e-5, (key, float(err))
